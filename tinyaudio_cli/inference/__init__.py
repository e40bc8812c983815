"""Media files to transcripts: the batched pipeline, its records, and the writers of txt/SRT/VTT/JSON/TSV."""
