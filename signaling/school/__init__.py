"""A school's week: the directory (schools, clusters, classrooms, teachers), the
timetable, classroom devices, usage statistics, and the database behind them
(docs/school-week.md)."""
