// Globals of the pages (classroom_web/static), for `tsc -p tsconfig.json` only: not served.

/** window.classroomStats() (DESIGN.md "Page hooks for automated browsers"). */
interface ClassroomStats {
  connectionState: string;
  framesDecoded: number;
  audioBytesReceived: number;
  videoTier: string | null;
  lessonState: string;
  [more: string]: unknown;
}

interface Window {
  classroomStats?: () => Promise<ClassroomStats>;
  /** hls.js (/vendor/hls.min.js), on the replay page only. */
  Hls?: any;
  /** Test and debugging hooks of the pages. */
  classroomQuiz?: unknown;
  studentQuiz?: unknown;
  teacherQuiz?: unknown;
  libraryState?: () => { count: number; status: string };
  /** The admin console's panels (admin.js). */
  adminState?: () => Record<string, any>;
  quizReport?: unknown;
}
