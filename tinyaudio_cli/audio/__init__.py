"""Media in: decoding any file ffmpeg reads to 16 kHz mono, duration from headers, and the voice activity detector."""
