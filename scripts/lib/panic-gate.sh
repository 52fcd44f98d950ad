# Shared by scripts/cortex-m4.sh and scripts/cortex-m4-digits.sh (sourced).
#
# panic_gate ELF [PATH...]: every gconv-core function that survived LTO as its own
# symbol in the firmware ELF must not call a function that can panic: core::panicking::*
# (panic, panic_fmt, panic_bounds_check, panic_const_*) or anything that calls one,
# directly or not (slice index failures, `copy_from_slice`'s `len_mismatch_fail`,
# unwrap/expect failures, `assert_failed`, ...): the set is computed from the call
# graph of the whole ELF (direct `bl`/`b` targets), seeded with core::panicking::* and
# the panic handler. gconv-core's core::fmt impls (Debug of Error, only used to print
# an error) are listed but not gated. Each function is disassembled over its whole size
# from the symbol table (`--start-address` / `--stop-address`): `--disassemble-symbols`
# stops at the first Arm mapping symbol (a literal pool or data in the code), which
# hid most of the large functions.
#
# Paths: each gated function is put on the path of the first gconv-core module in its
# demangled name (`<gconv_core::group::d4::D4 as gconv_core::fourier::..>` is fourier's):
#
#   plan (gconv_core::plan)        direct (conv, driver)     blocked     fast     fourier
#   layers     pool     model-f32 (model::float)     model-int8 (model::int8)
#   model (what both runners share)     int8-dsp (quant::dsp)     int8 (the rest of quant)
#   other (group, shape, error..)
#
# and the gate prints, per path, how many functions it checked and which. Every PATH
# given must have at least one gated function, or the gate fails: dropping a path from
# the firmware (or letting the compiler inline all of it into the firmware's own code)
# cannot make the gate vacuous. The firmware (examples/cortex-m4/src/gate.rs) calls
# every public entry point through a function pointer hidden by `black_box`, so each
# one is a symbol of its own.
#
# What the gate cannot see:
# * gconv-core code inlined into the firmware's own functions (it mixes with the
#   firmware's panics; e.g. the direct calls of `layers::relu` in main.rs): the gate
#   checks the out-of-line copy that gate.rs forces, compiled for opaque arguments,
#   not each inlined copy (which the compiler specialised to what it knew there);
# * code that is not linked into this Arm firmware: the x86 SIMD kernels (AVX2+FMA,
#   AVX-512, the int8 AVX2/VNNI paths), anything only a host build compiles, the
#   generic functions at types the firmware does not use, gconv-std entirely;
# * the digits binary's ELFs are gated without required paths (their constant models
#   may be inlined into the firmware's code);
# * what is not a call: a `udf` trap for `unreachable_unchecked`, arithmetic overflow
#   (not checked in release builds: it wraps), `debug_assert!`s (compiled out: the
#   firmware is a release build, so their release behaviour is what is gated);
# * indirect calls (function pointers, `dyn` vtables such as the int8 pooling's
#   `&mut dyn Iterator`): the call graph has direct calls only;
# * core functions on PANIC_GATE_ALLOW, whose panic an invariant of their own type
#   rules out (not followed, by design).
#
# Needs NM, OBJDUMP and CXXFILT set. Sets panic_fail=1 on failure.
# Mangled names (v0) of core functions whose panic path is excluded by an invariant of
# their own type (see panic_gate): `Zip::new` of `ChunksExact`/`ChunksExactMut` and
# `Chunks`/`ChunksMut` iterators divides by the chunk size, never zero.
PANIC_GATE_ALLOW='4core4iter8adapters3zip.*3Zip.*5slice4iter(11ChunksExact|14ChunksExactMut|6Chunks|9ChunksMut)[a-zA-Z_].*3new'
PANIC_GATE_PATHS="plan direct blocked fast fourier layers pool model-f32 model-int8 model int8-dsp int8 other"

# The path of a demangled gconv-core function name (see above).
panic_gate_path() {
    local m
    m=$(printf '%s\n' "$1" | grep -oE 'gconv_core::(plan|conv|driver|blocked|fast|fourier|layers|pool|model::float|model::int8|model|quant::dsp|quant)::' | head -1 || true)
    case "$m" in
    gconv_core::plan::) echo plan ;;
    gconv_core::conv:: | gconv_core::driver::) echo direct ;;
    gconv_core::blocked::) echo blocked ;;
    gconv_core::fast::) echo fast ;;
    gconv_core::fourier::) echo fourier ;;
    gconv_core::layers::) echo layers ;;
    gconv_core::pool::) echo pool ;;
    gconv_core::model::float::) echo model-f32 ;;
    gconv_core::model::int8::) echo model-int8 ;;
    gconv_core::model::) echo model ;;
    gconv_core::quant::dsp::) echo int8-dsp ;;
    gconv_core::quant::) echo int8 ;;
    *) echo other ;;
    esac
}

# Short name for the summary: generic arguments dropped, `<T as Trait>::f` as `T::f`,
# without `gconv_core::` and the first module.
panic_gate_short() {
    printf '%s\n' "$1" | sed -E ':a; s/(.)<[^<>]*>/\1/; ta; s/^<([^ >]*)( as [^>]*)?>/\1/; s/(::)+/::/g; s/::$//; s/^gconv_core::(model::|quant::)?[a-z0-9_]+:://'
}

panic_gate() {
    local ELF="$1"
    shift
    local expected=("$@")
    if [ -z "$NM" ] || [ -z "$OBJDUMP" ] || [ -z "$CXXFILT" ]; then
        echo "  cannot inspect the ELF (need llvm-nm, llvm-objdump, llvm-cxxfilt)" >&2
        panic_fail=1
        return
    fi
    [ -f "$ELF" ] || { echo "  $ELF: missing" >&2; panic_fail=1; return; }
    local offenders=() gated=0 addr size sym name kind start stop calls path p
    declare -A count=() names=()
    # Functions that can panic: every function of the ELF that reaches a seed through
    # direct calls or tail calls (fixed point over the call graph), one mangled name a
    # line. Not followed (PANIC_GATE_ALLOW): core's `Zip::new` of chunk iterators, whose
    # one panic is a division by the chunk size, nonzero by the iterator's construction
    # (`chunks_exact` asserts it in its caller, which the gate checks).
    local panicky
    panicky=$(mktemp)
    "$OBJDUMP" -d --no-show-raw-insn "$ELF" 2>/dev/null | awk -v allow="$PANIC_GATE_ALLOW" '
        /^[0-9a-f]+ <[^>]+>:$/ { fn = substr($2, 2, length($2) - 3); next }
        fn != "" && match($0, /<[^<> ]+>/) {
            callee = substr($0, RSTART + 1, RLENGTH - 2); sub(/\+0x[0-9a-f]+$/, "", callee)
            if (callee != fn && fn !~ allow) callers[callee] = callers[callee] " " fn
        }
        END {
            n = 0
            for (c in callers) if (c ~ /panicking|rust_begin_unwind/) { bad[c] = 1; queue[++n] = c }
            for (i = 1; i <= n; i++) {
                m = split(callers[queue[i]], cs, " ")
                for (j = 1; j <= m; j++) if (cs[j] != "" && !(cs[j] in bad)) { bad[cs[j]] = 1; queue[++n] = cs[j] }
            }
            for (c in bad) print c
        }' >"$panicky"
    if ! grep -q panicking "$panicky"; then
        echo "  no call to core::panicking found in the ELF: the call graph was not read" >&2
        panic_fail=1
    fi
    while read -r addr size sym; do
        name=$(echo "$sym" | "$CXXFILT")
        case "$name" in gconv_core::* | "<gconv_core::"*) ;; *) continue ;; esac
        case "$name" in *" as core::fmt::"*) kind="info" ;; *) kind="gate" ;; esac
        start=$((16#$addr & ~1)) # Thumb symbols have bit 0 set
        stop=$((start + 16#$size))
        calls=$("$OBJDUMP" -d --start-address="$start" --stop-address="$stop" "$ELF" 2>/dev/null |
            grep -oE "<[^<> ]+>" | sed -E 's/^<//; s/(\+0x[0-9a-f]+)?>$//' |
            grep -vxF "$sym" | sort -u | grep -xF -f "$panicky" | "$CXXFILT" | tr '\n' ' ' || true)
        path=$(panic_gate_path "$name")
        printf "  %s %-10s %-70s %s\n" "$kind" "$path" "$name" "${calls:-none}"
        if [ "$kind" = gate ]; then
            gated=$((gated + 1))
            count[$path]=$((${count[$path]:-0} + 1))
            names[$path]="${names[$path]:+${names[$path]}, }$(panic_gate_short "$name")"
            if [ -n "$calls" ]; then offenders+=("$name -> $calls"); fi
        fi
    done < <("$NM" -S "$ELF" | awk '$3 ~ /^[tT]$/ && $4 ~ /gconv_core/ { print $1, $2, $4 }' | sort -u)
    rm -f "$panicky"
    echo "  gated functions per path:"
    for p in $PANIC_GATE_PATHS; do
        [ -n "${count[$p]:-}" ] || continue
        printf "    %-10s %3d  %s\n" "$p" "${count[$p]}" "${names[$p]}"
    done
    local missing=()
    for p in "${expected[@]}"; do
        [ -n "${count[$p]:-}" ] || missing+=("$p")
    done
    if [ "$gated" -eq 0 ]; then
        echo "  no gconv-core function found in the ELF: nothing was checked" >&2
        panic_fail=1
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        echo "  expected paths with no gated function: ${missing[*]} (dropped from the firmware, or inlined into its own code)" >&2
        panic_fail=1
    fi
    if [ ${#offenders[@]} -gt 0 ]; then
        echo "  gconv-core functions with panic paths:" >&2
        printf '    %s\n' "${offenders[@]}" >&2
        panic_fail=1
    elif [ "$gated" -gt 0 ] && [ ${#missing[@]} -eq 0 ]; then
        echo "  $gated gated gconv-core functions on ${#count[@]} paths (expected: ${expected[*]:-none}): no panic calls"
    fi
}
