"""The Hugging Face Hub: download, export (model card, remote code) and push, and the export's folder guard."""
