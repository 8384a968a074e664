"""Dataset scans: every image of a dataset explained and scored into one table (in process or on Ray)."""
