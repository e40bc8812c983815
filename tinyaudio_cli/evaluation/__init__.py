"""Word error rate: the eval runner, text normalisation, scoring and the Whisper baseline."""
