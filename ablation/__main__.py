"""`python -m ablation` is the `ablation` command (what sweep YAMLs run)."""

from ablation.cli import main

main()
