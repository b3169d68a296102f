#!/usr/bin/env bash
# Where a server's CPU goes while bench/peers loads it: perf samples the tilegate and the
# mbtileserver public processes of one short run and groups tilegate's samples by component.
#
#   bench/peers/perf.sh small|large MODE-WORD OUT-DIR     e.g. bench/peers/perf.sh small token /tmp/p
#
# Needs perf and python3. Run from the repository root.
set -euo pipefail
size=$1 only=$2 out=$3
mkdir -p "$out"
go run ./bench/peers -rounds 1 -duration 8s -sizes "$size" -backends sqlite -only "$only" \
  >"$out/run.txt" 2>"$out/run.err" &
run=$!
for _ in $(seq 1 120); do grep -q "modes, " "$out/run.err" 2>/dev/null && break; sleep 1; done
tg=$(sed -n 's/^tilegate sqlite: pid \([0-9]*\),.*/\1/p' "$out/run.err")
mb=$(sed -n 's/^mbtileserver public: pid \([0-9]*\),.*/\1/p' "$out/run.err")
# Shorter than the run, so the binaries still exist when perf reads their symbols.
perf record -F 2000 -g -p "$tg" -o "$out/tilegate.data" -- sleep 14 >/dev/null 2>&1 &
perf record -F 2000 -g -p "$mb" -o "$out/mbtileserver.data" -- sleep 14 >/dev/null 2>&1 &
wait
for who in tilegate mbtileserver; do
  perf script -i "$out/$who.data" 2>/dev/null |
    awk '/^\S/{if(s!="")print s; s=""; next} {s=s" "$2} END{print s}' >"$out/$who.stacks"
done
cat "$out/run.txt"
echo "== tilegate, share of its CPU samples"
python3 bench/peers/perfcats.py "$out/tilegate.stacks"
