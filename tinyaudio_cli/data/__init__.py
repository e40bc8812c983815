"""Data sets to read: registered eval sets, Hub ids, Parquet, manifests and folders."""
