"""Allow ``python -m promptlooper`` as an alias of the console script."""

from promptlooper.cli import main

main()
