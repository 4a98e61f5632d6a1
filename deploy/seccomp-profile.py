#!/usr/bin/env python3
"""Makes deploy/ktm-seccomp.json from a runtime's default seccomp profile (the moby /
containers-common JSON format, with `includes.caps` / `excludes.caps` conditions): the default
unchanged, plus exactly two permissions:
  bpf              allowed to a container holding CAP_BPF      (default: CAP_SYS_ADMIN only)
  perf_event_open  allowed to a container holding CAP_PERFMON  (default: CAP_SYS_ADMIN only)
The default's rule that refuses these calls (EPERM) to containers without CAP_SYS_ADMIN is
narrowed to those holding neither CAP_SYS_ADMIN nor the new capability; every other call keeps
the default's rule.

usage: seccomp-profile.py [BASE]            the profile, on stdout (BASE default:
                                            /usr/share/containers/seccomp.json, podman's)
       seccomp-profile.py --check PROFILE [BASE]
                                            exit 0 iff PROFILE is what BASE gives (so the
                                            shipped profile is the runtime's default plus
                                            exactly these two permissions)
"""
import json
import sys

GRANTS = {"bpf": "CAP_BPF", "perf_event_open": "CAP_PERFMON"}


def derive(base):
    out = dict(base)
    rules = []
    for rule in base["syscalls"]:
        names = set(rule["names"]) & set(GRANTS)
        refuses = rule["action"] == "SCMP_ACT_ERRNO" and rule.get("excludes", {}).get("caps")
        if names and refuses and not rule.get("args"):
            rest = [n for n in rule["names"] if n not in GRANTS]
            if rest:
                rules.append({**rule, "names": rest})
            for name in sorted(names):
                caps = rule["excludes"]["caps"] + [GRANTS[name]]
                rules.append({**rule, "names": [name], "excludes": {**rule["excludes"], "caps": caps}})
        else:
            rules.append(rule)
    for name, cap in GRANTS.items():
        rules.append({"names": [name], "action": "SCMP_ACT_ALLOW", "args": [],
                      "comment": f"KTM: {name} with {cap} (deploy/seccomp-profile.py)",
                      "includes": {"caps": [cap]}, "excludes": {}})
    out["syscalls"] = rules
    return out


def render(profile):
    return json.dumps(profile, indent="\t") + "\n"


def main(argv):
    if argv and argv[0] == "--check":
        profile, base = argv[1], argv[2] if len(argv) > 2 else "/usr/share/containers/seccomp.json"
        want = render(derive(json.load(open(base))))
        got = open(profile).read()
        if got != want:
            print(f"{profile} is not {base} plus exactly bpf/CAP_BPF and perf_event_open/CAP_PERFMON", file=sys.stderr)
            return 1
        print(f"{profile} is {base} plus exactly bpf/CAP_BPF and perf_event_open/CAP_PERFMON")
        return 0
    base = argv[0] if argv else "/usr/share/containers/seccomp.json"
    sys.stdout.write(render(derive(json.load(open(base)))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
