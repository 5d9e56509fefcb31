"""``python -m agno_mongo.cli``."""

from agno_mongo.cli.app import main

main()
