"""同步练习 / 同步测试: questions pushed live, answered and scored live, learning reports.

Pure modules (no aiohttp, no aiortc): ``questions`` (question types, question-set JSON
import/export), ``scoring`` (normalization and scoring), ``report`` (learning report).
``store`` persists rounds and answers (memory or Redis, one interface); ``feature`` plugs
the messages and routes into a signaling node.
"""
