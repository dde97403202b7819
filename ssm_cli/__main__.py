"""``python -m ssm_cli``: the ``ssm`` command."""
from ssm_cli.cli.main import main

main()
