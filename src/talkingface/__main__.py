"""`python -m talkingface` runs the CLI."""

from talkingface.cli import main

main()
