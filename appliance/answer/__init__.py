"""Installer answer files (Proxmox VE's `answer.toml` dialect plus our keys).

    from appliance.answer import load_answer, resolve
    answer = load_answer("answer.toml")       # parse + validate, offline
    plan = resolve(answer, machine)           # an InstallPlan for one machine

`model` holds the data the installer consumes (Answer, InstallPlan), `keys`
the one table of answer-file keys, `parse` the validation, `machine` what a
machine looks like to the resolver, `resolve` the matching of disks and NICs.
"""
