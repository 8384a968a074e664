"""The Models dock: one slot per role (Teacher, Student, Base)."""
