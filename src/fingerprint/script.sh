#!/bin/sh
# fleetctl fingerprint: what this host is, as key=value lines on stdout.
#
# Runs as `sh -c` on hosts we know nothing about yet, so: POSIX sh only (dash,
# busybox ash), nothing beyond coreutils/busybox and /proc. Every probe runs in
# a subshell with stderr discarded, so a missing tool or file costs one fact,
# never the others, and the script always exits 0. A fact that cannot be
# learned is left out, never guessed. Keys are the fields of model::HostFacts.

# Stable tool output (df headers, sort order); values pass through as bytes.
LC_ALL=C
export LC_ALL
# Non-login sessions often lack the sbin directories, where `ip` may live.
PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PATH

# Nothing below wants pathname expansion, and splitting values must not glob.
set -f
nl='
'
cr=$(printf '\r')

# kv KEY VALUE: one line, only for a value that is not empty. Line breaks in
# the value become spaces, in the shell itself: `tr` may be what is broken.
kv() {
    kv_key=$1
    case $2 in
    *"$nl"* | *"$cr"*)
        IFS="$nl$cr"
        # shellcheck disable=SC2086 # splitting at line breaks is the point
        set -- $2
        IFS=' '
        set -- "$*"
        unset IFS
        ;;
    *) set -- "$2" ;;
    esac
    [ -n "$1" ] || return 0
    printf '%s=%s\n' "$kv_key" "$1"
}

has() { command -v "$1" >/dev/null 2>&1; }

is_uint() {
    case $1 in
    '' | *[!0-9]*) return 1 ;;
    esac
    return 0
}

# Commands that may wait on DNS (hostname -f, sudo) get a deadline when the
# host has a `timeout` that takes our syntax (old busybox wants `-t SECS`).
limit=
if has timeout && timeout 2 true >/dev/null 2>&1; then
    limit="timeout 5"
fi

probe_hostname() {
    # What `hostname` says (a container or sandbox may answer for itself
    # there), else the kernel's copy.
    h=$(hostname 2>/dev/null) || h=
    [ -n "$h" ] || read -r h </proc/sys/kernel/hostname
    [ -n "$h" ] || h=$(uname -n)
    kv hostname "$h"
    # Only a name with a dot is fully qualified; otherwise hostname -f just
    # echoes the short name back.
    f=$($limit hostname -f 2>/dev/null) || f=
    case $f in
    *.*) kv fqdn "$f" ;;
    esac
}

# unquote VALUE: sets v to an os-release value without its quotes and
# escapes. Parsed by the shell itself: on a busy host (and in sandboxes like
# gVisor) every process started costs more than all the parsing.
unquote() {
    v=$1
    case $v in
    \"*\") v=${v#\"} v=${v%\"} ;;
    \'*\') v=${v#\'} v=${v%\'} ;;
    esac
    case $v in
    *\\*) v=$(printf '%s\n' "$v" | sed 's/\\\(.\)/\1/g') ;;
    esac
}

probe_os() {
    for f in /etc/os-release /usr/lib/os-release; do
        [ -r "$f" ] || continue
        id= name= version= pretty=
        while IFS= read -r line || [ -n "$line" ]; do
            # The first line of a key wins.
            case $line in
            ID=*) [ -n "$id" ] || id=${line#ID=} ;;
            NAME=*) [ -n "$name" ] || name=${line#NAME=} ;;
            VERSION_ID=*) [ -n "$version" ] || version=${line#VERSION_ID=} ;;
            PRETTY_NAME=*) [ -n "$pretty" ] || pretty=${line#PRETTY_NAME=} ;;
            esac
        done <"$f"
        unquote "$id" && kv os_id "$v"
        unquote "$name" && kv os_name "$v"
        unquote "$version" && kv os_version "$v"
        unquote "$pretty" && kv os_pretty "$v"
        return 0
    done
}

probe_kernel() {
    # uname -srv, from where uname reads it (no process); uname for the rest.
    s= r= v=
    {
        read -r s </proc/sys/kernel/ostype
        read -r r </proc/sys/kernel/osrelease
        IFS= read -r v </proc/sys/kernel/version
    } 2>/dev/null
    if [ -n "$s" ] && [ -n "$r" ] && [ -n "$v" ]; then
        kv kernel "$s $r $v"
    else
        kv kernel "$(uname -srv)"
    fi
    kv arch "$(uname -m)"
}

probe_cpu() {
    # x86 names the model (in the first lines, where the loop stops); ARM
    # only names the board or the part number.
    model= hardware= part=
    while IFS= read -r line; do
        case $line in
        "model name"*:*)
            model=${line#*:}
            break
            ;;
        Hardware*:*) [ -n "$hardware" ] || hardware=${line#*:} ;;
        "CPU part"*:*) [ -n "$part" ] || part=${line#*:} ;;
        esac
    done </proc/cpuinfo
    for m in "$model" "$hardware" "$part"; do
        m=${m#"${m%%[![:space:]]*}"}
        if [ -n "$m" ]; then
            kv cpu_model "$m"
            break
        fi
    done
    # nproc counts the CPUs this session may use; /proc/cpuinfo all of them.
    n=$(nproc 2>/dev/null) || n=
    is_uint "$n" || n=$(getconf _NPROCESSORS_ONLN 2>/dev/null) || n=
    is_uint "$n" || n=$(grep -c '^processor' /proc/cpuinfo)
    if is_uint "$n" && [ "$n" -gt 0 ]; then
        kv cpu_count "$n"
    fi
}

probe_memory() {
    # Shell arithmetic is 64-bit in dash and ash; awk would print big
    # numbers in exponent form on mawk.
    while read -r key value _; do
        case $key in
        MemTotal:) is_uint "$value" && kv mem_total_bytes $((value * 1024)) ;;
        SwapTotal:)
            is_uint "$value" && kv swap_total_bytes $((value * 1024))
            break
            ;;
        esac
    done </proc/meminfo
}

probe_root_fs() {
    # -P keeps each file system on one line; counting fields from the end
    # survives a device name with spaces in it.
    line=$(df -P -k /)
    line=${line##*"$nl"}
    # shellcheck disable=SC2086 # splitting into fields is the point
    set -- $line
    [ $# -ge 6 ] || return 0
    shift $(($# - 5))
    is_uint "$1" && kv root_fs_size_bytes $(($1 * 1024))
    is_uint "$2" && kv root_fs_used_bytes $(($2 * 1024))
}

probe_uptime() {
    read -r up _ </proc/uptime
    up=${up%%.*}
    is_uint "$up" && kv uptime_secs "$up"
}

probe_ids() {
    read -r boot </proc/sys/kernel/random/boot_id && kv boot_id "$boot"
    id=
    read -r id </etc/machine-id 2>/dev/null
    # Hosts without systemd may still have D-Bus's copy.
    [ -n "$id" ] || read -r id </var/lib/dbus/machine-id
    kv machine_id "$id"
}

probe_virtualization() {
    if has systemd-detect-virt; then
        # Prints "none" (and exits 1) on bare metal: that is an answer too.
        v=$(systemd-detect-virt 2>/dev/null)
        if [ -n "$v" ]; then
            kv virtualization "$v"
            return 0
        fi
    fi
    # Without systemd, hints; containers first, as systemd-detect-virt does,
    # since a container inside a VM is the more useful answer.
    v=
    if [ -e /.dockerenv ]; then
        v=docker
    elif [ -e /run/.containerenv ]; then
        v=podman
    fi
    if [ -z "$v" ]; then
        # Readable by root only (and not always then).
        v=$(tr '\0' '\n' </proc/1/environ 2>/dev/null | sed -n 's/^container=//p' | head -n 1)
    fi
    if [ -z "$v" ]; then
        # Before the hypervisor flag: WSL 2 runs under Hyper-V and has it too.
        if [ -e /proc/sys/fs/binfmt_misc/WSLInterop ] || grep -qi microsoft /proc/version; then
            v=wsl
        elif grep '^flags' /proc/cpuinfo | grep -qw hypervisor; then
            v=vm
        fi
    fi
    kv virtualization "$v"
}

probe_init() {
    if [ -d /run/systemd/system ]; then
        kv init_system systemd
        return 0
    fi
    read -r c </proc/1/comm
    kv init_system "${c##*/}"
}

probe_user() {
    # One `id`: "uid=0(root) gid=0(root) groups=...", in coreutils and busybox.
    ids=$(id 2>/dev/null) || ids=
    uid= u=
    case $ids in
    uid=*)
        uid=${ids#uid=}
        uid=${uid%%[!0-9]*}
        case $ids in
        "uid=$uid("*)
            u=${ids#"uid=$uid("}
            u=${u%%")"*}
            ;;
        esac
        ;;
    esac
    [ -n "$u" ] || u=$(whoami 2>/dev/null) || u=
    [ -n "$u" ] || u=${LOGNAME:-${USER:-}}
    kv user "$u"

    if [ "$uid" = 0 ]; then
        kv is_root true
        kv sudo_nopasswd true
        return 0
    fi
    is_uint "$uid" && kv is_root false
    if has sudo; then
        # -n: fail rather than ask for a password.
        if $limit sudo -n true </dev/null >/dev/null 2>&1; then
            kv sudo_nopasswd true
        else
            kv sudo_nopasswd false
        fi
    fi
}

probe_addresses() {
    # Global scope leaves out loopback and link-local; temporary and
    # deprecated IPv6 addresses come and go, so they are not the host's.
    list=
    if has ip; then
        list=$(ip -o addr show scope global | while read -r _ _ family addr rest; do
            case $family in inet | inet6) ;; *) continue ;; esac
            case " $rest " in *" temporary "* | *" deprecated "*) continue ;; esac
            echo "${addr%/*}"
        done)
    fi
    if [ -z "$list" ]; then
        list=$(hostname -I 2>/dev/null) || list=
    fi
    for a in $list; do
        kv address "$a"
    done
}

# One subshell per probe: whatever goes wrong in one (a fatal shell error
# included) cannot take the others, or the exit status, with it.
(probe_hostname) 2>/dev/null </dev/null
(probe_os) 2>/dev/null </dev/null
(probe_kernel) 2>/dev/null </dev/null
(probe_cpu) 2>/dev/null </dev/null
(probe_memory) 2>/dev/null </dev/null
(probe_root_fs) 2>/dev/null </dev/null
(probe_uptime) 2>/dev/null </dev/null
(probe_ids) 2>/dev/null </dev/null
(probe_virtualization) 2>/dev/null </dev/null
(probe_init) 2>/dev/null </dev/null
(probe_user) 2>/dev/null </dev/null
(probe_addresses) 2>/dev/null </dev/null
exit 0
