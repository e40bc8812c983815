from tinyaudio_cli.cli import main

main()
