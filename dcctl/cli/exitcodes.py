"""Exit codes, named once: CI pipelines branch on them."""

OK = 0
#: invalid input, a failed operation, or (``dr status``) a breached RPO
ERROR = 1
#: ``plan --detailed-exitcode``: the plan has changes (Terraform's convention)
CHANGES = 2
#: the command line itself is wrong (unknown option, missing argument); BSD's EX_USAGE
USAGE = 64
#: interrupted by the user (Ctrl-C)
INTERRUPTED = 130
