"""What the window shows and does, without widgets: the Session (one owner per piece of state), the
job queue, the analysis scheduler and attention reader, projects, settings, and the engine calls that
run inside jobs (``analysis``, the one module here that imports torch)."""
