#!/usr/bin/env bash
# checkov over every rendered CloudFormation template: the bootstrap stack once, and the
# data and app stacks of every stages/*.yaml, and the ci stack of those with `ci:`
# (`wsctl template --stage S --stack K`).
# Each failed check must be waived in templates/checkov-waivers.yaml (check id, optional
# resources, and the reason); any unwaived failure fails the script with the resource,
# the check and the file. Waivers that match nothing are reported as stale.
#
# Usage: scripts/checkov.sh [--wsctl PATH]      (default: cargo run -q --)
# Needs checkov on PATH (.ci/run installs it into a venv and links /usr/local/bin/checkov;
# locally: python3 -m venv /root/.cache/wsctl-tools/checkov &&
#   /root/.cache/wsctl-tools/checkov/bin/pip install checkov &&
#   ln -sf /root/.cache/wsctl-tools/checkov/bin/checkov /usr/local/bin/checkov).
# Cost: ~10 s of checkov for 9 templates, plus the wsctl build if not yet built.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/wsctl-target}"

WSCTL=()
if [ "${1:-}" = "--wsctl" ]; then
    WSCTL=("$2")
else
    cargo build -q --bin wsctl
    WSCTL=("$CARGO_TARGET_DIR/debug/wsctl")
fi

command -v checkov >/dev/null || { echo "checkov is not on PATH (see the header of $0)" >&2; exit 2; }
# checkov's own interpreter has PyYAML; fall back to python3.
PY=$(head -n1 "$(readlink -f "$(command -v checkov)")" | sed -n 's/^#!\(.*python[0-9.]*\)$/\1/p')
[ -x "${PY:-}" ] || PY=python3

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

"${WSCTL[@]}" --stages-dir "$REPO/stages" template --stage local --stack bootstrap >"$OUT/bootstrap.yaml"
for file in "$REPO"/stages/*.yaml; do
    stage=$(basename "$file" .yaml)
    for stack in data app; do
        "${WSCTL[@]}" --stages-dir "$REPO/stages" template --stage "$stage" --stack "$stack" >"$OUT/$stage-$stack.yaml"
    done
    # The CI deploy role, for the stages with a `ci:` section.
    if grep -q '^ci:' "$file"; then
        "${WSCTL[@]}" --stages-dir "$REPO/stages" template --stage "$stage" --stack ci >"$OUT/$stage-ci.yaml"
    fi
done
echo "rendered: $(cd "$OUT" && ls | tr '\n' ' ')"

# One JSON report per file (checkov exits 1 on failures; the filter below decides).
for t in "$OUT"/*.yaml; do
    checkov -f "$t" --framework cloudformation --quiet --compact -o json >"${t%.yaml}.json" 2>"${t%.yaml}.err" || true
done

"$PY" - "$REPO/templates/checkov-waivers.yaml" "$OUT" <<'EOF'
import glob, json, os, sys
import yaml

waivers_path, out = sys.argv[1], sys.argv[2]
waivers = yaml.safe_load(open(waivers_path))["waivers"]
for w in waivers:
    if not str(w.get("reason", "")).strip():
        sys.exit(f"{waivers_path}: waiver {w.get('check')} has no reason")
used = [0] * len(waivers)

def waived(check, resource):
    for i, w in enumerate(waivers):
        if w["check"] == check and ("resources" not in w or resource in w["resources"]):
            used[i] += 1
            return True
    return False

unwaived, passed, failed, files = [], 0, 0, 0
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(path)[: -len(".json")] + ".yaml"
    text = open(path).read().strip()
    if not text:
        sys.exit(f"checkov produced no report for {name}: " + open(path[:-5] + ".err").read())
    reports = json.loads(text)
    for report in reports if isinstance(reports, list) else [reports]:
        if "results" not in report:  # no resources of the framework
            continue
        files += 1
        if report["summary"].get("parsing_errors"):
            sys.exit(f"checkov could not parse {name}")
        passed += report["summary"]["passed"]
        for f in report["results"]["failed_checks"]:
            failed += 1
            if not waived(f["check_id"], f["resource"]):
                lines = f.get("file_line_range") or ["?", "?"]
                unwaived.append(f"{name}:{lines[0]}-{lines[1]}  {f['resource']}  {f['check_id']}  {f['check_name']}")

for i, w in enumerate(waivers):
    if not used[i]:
        print(f"note: stale waiver {w['check']} {w.get('resources', '(all)')}: matches no failed check")
print(f"checkov: {files} templates, {passed} passed, {failed} failed, {failed - len(unwaived)} of them waived")
if unwaived:
    print(f"\n{len(unwaived)} failed check(s) not waived in {waivers_path} (fix the template, or waive with a reason):")
    print("\n".join(sorted(unwaived)))
    sys.exit(1)
EOF
