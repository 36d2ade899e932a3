#!/bin/sh
# Deterministic A/B of a crawl peer: user-space instructions and simulated cache misses per page
# under callgrind (a 512 KiB L2 as the last level, like this machine's per-core L2).
#
#   cargo run --release -p green-bench --bin crawl -- --serve 1700 &   # prints the URL (nginx stops after 30 min)
#   benches/scripts/callgrind-crawl.sh target/release/crawl green-plain URL [PAGES]
#
# Counts the whole child (process start and the workers' shutdown included: the same in both
# builds of an A/B); callgrind does not see the kernel's writes into user buffers (recv), so a
# miss it reports on a freshly received byte may be a hit on the real machine: confirm a change
# in misses with CPU time (the crawl bench's side-by-side ratio).
set -eu
exe=$1 peer=$2 url=$3 pages=${4:-10000}
out=$(mktemp -d)
valgrind --tool=callgrind --cache-sim=yes --LL=524288,8,64 \
    --callgrind-out-file="$out/cg.out" \
    "$exe" --child "$peer" --url "$url" --concurrency 100 >"$out/child.log" 2>"$out/vg.log"
grep RESULT "$out/child.log"
summary=$(grep '^summary:' "$out/cg.out" | cut -d' ' -f2-)
events=$(grep '^events:' "$out/cg.out" | cut -d' ' -f2-)
echo "$events" "$summary" | awk -v pages="$pages" '{
    n = NF / 2
    for (i = 1; i <= n; i++) v[$i] = $(i + n)
    printf "per page: Ir %.0f  Dr %.0f  Dw %.0f  D1 misses %.1f  LL misses (data) %.1f  LL misses (instr) %.1f\n",
        v["Ir"] / pages, v["Dr"] / pages, v["Dw"] / pages,
        (v["D1mr"] + v["D1mw"]) / pages, (v["DLmr"] + v["DLmw"]) / pages, v["ILmr"] / pages
}'
echo "profile: $out/cg.out (callgrind_annotate --inclusive=yes $out/cg.out)"
