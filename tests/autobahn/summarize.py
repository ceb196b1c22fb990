"""Summarizes an Autobahn|Testsuite report (index.json) by verdict.

    summarize.py INDEX_JSON [--name NAME] [--expect COUNT]

Reads either report: the fuzzing client's (our server tested) or the
fuzzing server's (our client tested); both key index.json by agent, then
by case id. Exits with status 1 unless every case's behavior and close
behavior are OK or INFORMATIONAL, and unless every section of the suite
but compression ran (the suite numbers them 1-7, 9 and 10; there is no
section 8). --name labels the summary line; --expect fails the run unless
the report holds exactly that many cases (a client that never connected
for a case leaves no entry at all).
"""
import argparse
import collections
import json
import sys

PASSING = {"OK", "INFORMATIONAL"}

arguments = argparse.ArgumentParser()
arguments.add_argument("index_json")
arguments.add_argument("--name")
arguments.add_argument("--expect", type=int)
options = arguments.parse_args()
report = json.load(open(options.index_json))
failures = []
verdicts = collections.Counter()
sections = collections.Counter()
for agent, cases in sorted(report.items()):
    for case_id, result in cases.items():
        behavior, close = result["behavior"], result["behaviorClose"]
        # A case counts once, under its worse verdict.
        verdict = behavior if behavior not in PASSING else close
        if verdict in PASSING and "INFORMATIONAL" in (behavior, close):
            verdict = "INFORMATIONAL"
        verdicts[verdict] += 1
        sections[case_id.split(".")[0]] += 1
        if behavior not in PASSING or close not in PASSING:
            failures.append("%s: behavior %s, close %s (%s ms)" % (case_id, behavior, close, result.get("duration")))

total = sum(verdicts.values())
order = ["OK", "INFORMATIONAL", "NON-STRICT", "FAILED", "UNIMPLEMENTED", "WRONG CODE", "UNCLEAN"]
names = order + sorted(set(verdicts) - set(order))
label = "Autobahn summary" + (" (%s)" % options.name if options.name else "")
print("%s: %d cases: %s" % (label, total, ", ".join("%d %s" % (verdicts[v], v) for v in names if verdicts[v] or v in order[:5])))
print("cases per section: %s" % ", ".join("%s: %d" % (s, sections[s]) for s in sorted(sections, key=int)))
missing = [s for s in ["1", "2", "3", "4", "5", "6", "7", "9", "10"] if sections[s] == 0]
if missing:
    print("sections that did not run: %s" % ", ".join(missing))
short = options.expect is not None and total != options.expect
if short:
    print("expected %d cases, the report holds %d" % (options.expect, total))
for line in sorted(failures, key=lambda l: [int(p) for p in l.split(":")[0].split(".")]):
    print("  below the bar: " + line)
sys.exit(1 if failures or missing or short or total == 0 else 0)
