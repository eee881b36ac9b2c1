#!/usr/bin/env bash
# The linker of the static release build (.cargo/config.toml names it for
# x86_64-unknown-linux-musl): the C compiler driver, as rustc would call it,
# with the machine code laid out in the order of
# scripts/release/text-order.txt.
#
# Why: the kernel maps a program's code in 64 KiB blocks around every page it
# runs (fault-around; 128 KiB read-around when the file is not cached yet), so
# the code a process maps is set by how widely the functions it runs are
# spread, not by their size. In the default layout the ~1,600 functions that
# start-up and requests run at the defaults lie across 2.4 MiB of the 2.9 MiB
# of code, and all of that was resident. Side by side they fill ~1.2 MiB
# (BENCHMARKS.md, "Code laid out by use"). The list is made by running the
# service (scripts/release/text-order.sh, `make text-order`).
#
# How: rustc puts every function in a section of its own, `.text.<symbol>`
# (`.text.unlikely.<symbol>` for cold ones). Before linking, the sections of
# the listed functions in rustc's object files are renamed
# `.text.sorted.<rank>`, which GNU ld's default linker script keeps
# together, sorted by name, ahead of the rest of `.text` (only the compiler's
# `.text.unlikely`, `.startup` and `.hot` groups come before them):
# `SORT(.text.sorted.*)`, binutils ≥ 2.36.
# A listed name the objects do not have is skipped: a function renamed or
# inlined since the list was made, or every function after a new toolchain
# or dependency version (a mangled name ends in a hash of the crate's build
# settings and version). How many were placed goes to `<output>.text-order`
# beside the linked binary, which `make release` prints.
set -euo pipefail

order="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/text-order.txt"
args=()
output=""
placed=""
expect_output=false
for arg in "$@"; do
  if $expect_output; then
    output=$arg
    expect_output=false
  elif [ "$arg" = -o ]; then
    expect_output=true
  fi
  if [[ $arg == *.rcgu.o ]] && [ -s "$order" ]; then
    # objcopy options (an @file, next to rustc's object in its temporary
    # directory: removed with it), one rename per listed function found;
    # ranks zero-padded so that sorting by name is sorting by rank.
    readelf -SW "$arg" | awk -v order="$order" '
      BEGIN { while ((getline line < order) > 0) if (line != "" && !(line in rank)) rank[line] = ++n }
      match($0, /\] \.text\.[^ ]+/) {
        section = substr($0, RSTART + 2, RLENGTH - 2)
        name = section
        sub(/^\.text\.(unlikely\.)?/, "", name)
        if ((name in rank) && !(section in seen)) {
          seen[section] = 1
          printf "--rename-section %s=.text.sorted.%06d\n", section, rank[name]
          if (!(name in found)) { found[name] = 1; placed++ }
        }
      }
      END { print placed + 0 > "/dev/stderr" }' >"$arg.text-order" 2>"$arg.placed"
    objcopy @"$arg.text-order" "$arg" "$arg.ordered.o"
    placed=$(( ${placed:-0} + $(cat "$arg.placed") ))
    args+=("$arg.ordered.o")
  else
    args+=("$arg")
  fi
done
if [ -n "$output" ] && [ -n "$placed" ]; then
  echo "$placed of $(awk 'NF && !seen[$1]++' "$order" | wc -l) functions listed in scripts/release/text-order.txt placed first" \
    >"$output.text-order"
fi
exec cc "${args[@]}"
