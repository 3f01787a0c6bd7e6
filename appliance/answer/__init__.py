"""Installer answer files (Proxmox VE's `answer.toml` dialect plus our keys).

    from appliance.answer import load_answer, resolve, require_installable, this_machine
    answer = load_answer("answer.toml")       # parse + validate, offline
    plan = resolve(answer, this_machine())    # an InstallPlan for this machine
    require_installable(plan)                 # zfs/btrfs: not supported yet

`model` holds the data the installer consumes (Answer, InstallPlan), `keys`
the one table of answer-file keys, `parse` the validation, `machine` what a
machine looks like to the resolver, `resolve` the matching of disks and NICs,
`commands` what the CLI prints. Every problem is an AnswerError (exit 6).
"""

from appliance.answer.machine import Machine, this_machine
from appliance.answer.model import Answer, InstallPlan
from appliance.answer.parse import load_answer, parse_answer
from appliance.answer.resolve import require_installable, resolve

__all__ = [
    "Answer",
    "InstallPlan",
    "Machine",
    "load_answer",
    "parse_answer",
    "require_installable",
    "resolve",
    "this_machine",
]
