"""Widgets shared by the rooms: plots, tables, drag and drop, the job status bar."""
