# Shared by scripts/cortex-m4.sh and scripts/cortex-m4-digits.sh (sourced).
#
# panic_gate ELF: every gconv-core function that survived LTO as its own symbol in
# the firmware ELF (the public kernels' out-of-line bodies: conv drivers, bank
# expansion, layers, the model runner) must not call a panic entry point:
# core::panicking::* (panic, panic_fmt, panic_bounds_check, panic_const_*), the
# slice index failures or unwrap/expect failures. gconv-core's core::fmt impls
# (Debug of Error, only used to print an error) are listed but not gated. Code inlined
# into the firmware's own functions is not covered (it would mix with the firmware's
# own panics). Each function is disassembled over its whole size from the symbol
# table (`--start-address` / `--stop-address`): `--disassemble-symbols` stops at the
# first Arm mapping symbol (a literal pool or data in the code), which hid most of the
# large functions. Needs NM, OBJDUMP and CXXFILT set. Sets panic_fail=1 on failure.
panic_gate() {
    local ELF="$1"
    local PANIC_RE='(panicking|panic_bounds_check|slice_index_fail|slice_end_index|slice_start_index|unwrap_failed|expect_failed)'
    if [ -z "$NM" ] || [ -z "$OBJDUMP" ] || [ -z "$CXXFILT" ]; then
        echo "  cannot inspect the ELF (need llvm-nm, llvm-objdump, llvm-cxxfilt)" >&2
        panic_fail=1
        return
    fi
    [ -f "$ELF" ] || { echo "  $ELF: missing" >&2; panic_fail=1; return; }
    local offenders=() gated=0 addr size sym name kind start stop calls
    while read -r addr size sym; do
        name=$(echo "$sym" | "$CXXFILT")
        case "$name" in gconv_core::* | "<gconv_core::"*) ;; *) continue ;; esac
        case "$name" in *" as core::fmt::"*) kind="info" ;; *) kind="gate" ;; esac
        start=$((16#$addr & ~1)) # Thumb symbols have bit 0 set
        stop=$((start + 16#$size))
        calls=$("$OBJDUMP" -d --start-address="$start" --stop-address="$stop" "$ELF" 2>/dev/null |
            grep -oE "<(_RN|_ZN)[^>+]*${PANIC_RE}[^>+]*>" |
            sed -E 's/^<//; s/>$//' | sort -u | "$CXXFILT" | tr '\n' ' ' || true)
        printf "  %s %-70s %s\n" "$kind" "$name" "${calls:-none}"
        if [ "$kind" = gate ]; then
            gated=$((gated + 1))
            if [ -n "$calls" ]; then offenders+=("$name -> $calls"); fi
        fi
    done < <("$NM" -S "$ELF" | awk '$3 ~ /^[tT]$/ && $4 ~ /gconv_core/ { print $1, $2, $4 }' | sort -u)
    if [ "$gated" -eq 0 ]; then
        echo "  no gconv-core function found in the ELF: nothing was checked" >&2
        panic_fail=1
    elif [ ${#offenders[@]} -gt 0 ]; then
        echo "  gconv-core functions with panic paths:" >&2
        printf '    %s\n' "${offenders[@]}" >&2
        panic_fail=1
    else
        echo "  $gated gated gconv-core functions: no panic calls"
    fi
}
