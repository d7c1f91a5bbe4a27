#!/usr/bin/env bash
# Start or stop a private containerd whose every path lives under one directory.
#
#   scripts/containerd.sh start DIR   write DIR/config.toml, start containerd in the
#                                     background (PID in DIR/containerd.pid, log in
#                                     DIR/containerd.log), wait until it answers, print the
#                                     socket path
#   scripts/containerd.sh stop DIR    kill its shims and containers, stop it (SIGTERM, then
#                                     SIGKILL), unmount everything under DIR, remove DIR
#
# The config is the one the Rust test support (crates/testkit) writes: the CRI plugin with a
# locally imported sandbox image, no OOM-score changes (no CAP_SYS_RESOURCE in CI
# containers) and network namespaces kept under DIR. It is meant for CI smoke checks on
# machines where containerd is installed but not running (PID 1 is not systemd).
set -euo pipefail

readonly START_DEADLINE_SECONDS=10
readonly STOP_DEADLINE_SECONDS=5

die() {
	echo "containerd.sh: $*" >&2
	exit 1
}

usage() {
	echo "usage: $0 start|stop DIR" >&2
	exit 2
}

write_config() {
	local dir=$1
	mkdir -p "$dir/root" "$dir/state" "$dir/run" "$dir/opt" "$dir/cni"
	cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/run/containerd.sock"
[ttrpc]
  address = "$dir/run/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/pause:local"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stats_collect_period = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
EOF
}

# Whether PID $1 is a live process. Zombies count as gone: a killed shim's parent may be an
# init that reaps slowly or never.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z && ${stat:0:1} != X ]]
}

# Containerd shims started for this instance, one "PID NAMESPACE ID" line each: their
# command line names its socket and their task group.
shims() {
	local dir=$1 file pid ns id i
	local -a args
	# Command lines are NUL-separated, hence -a. The grep itself names the socket too, but
	# not containerd-shim, so the second check drops it.
	while read -r file; do
		pid=${file#/proc/}
		pid=${pid%/cmdline}
		{ mapfile -d '' -t args <"$file"; } 2>/dev/null || continue
		[[ ${args[0]:-} == *containerd-shim* ]] || continue
		ns=- id=-
		for ((i = 1; i + 1 < ${#args[@]}; i++)); do
			case ${args[i]} in
			-namespace) ns=${args[i + 1]} ;;
			-id) id=${args[i + 1]} ;;
			esac
		done
		echo "$pid $ns $id"
	done < <(grep -las -- "$dir/run/containerd.sock" /proc/[0-9]*/cmdline || true)
}

# The socket a shim serves for task group ID in namespace NS of the instance in DIR:
# containerd names it sha256(<address>/<namespace>/<id>).
shim_socket() {
	local dir=$1 ns=$2 id=$3 hash
	hash=$(printf '%s' "$dir/run/containerd.sock/$ns/$id" | sha256sum | cut -d' ' -f1)
	echo "/run/containerd/s/$hash"
}

# Process IDs whose parent is PID $1 (containers under a shim).
children() {
	local parent=$1 stat pid ppid rest
	for stat in /proc/[0-9]*/stat; do
		{ read -r pid rest <"$stat"; } 2>/dev/null || continue
		# Field 4 (ppid) follows "(comm) state"; comm may hold spaces, so cut after ')'.
		rest=${rest##*) }
		read -r _ ppid _ <<<"$rest"
		if [[ $ppid == "$parent" ]]; then
			echo "$pid"
		fi
	done
}

# Waits until none of the given PIDs is alive or the deadline passes; returns 1 on timeout.
wait_gone() {
	local deadline=$(($(date +%s) + STOP_DEADLINE_SECONDS)) pid any
	while :; do
		any=0
		for pid in "$@"; do
			if alive "$pid"; then
				any=1
			fi
		done
		((any == 0)) && return 0
		(($(date +%s) >= deadline)) && return 1
		sleep 0.05
	done
}

start() {
	local dir=$1
	[[ $dir == /* ]] || dir="$PWD/$dir"
	local sock="$dir/run/containerd.sock"
	if [[ -f $dir/containerd.pid ]] && alive "$(cat "$dir/containerd.pid")"; then
		die "containerd already runs for $dir (pid $(cat "$dir/containerd.pid"))"
	fi
	write_config "$dir"
	containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
	local pid=$!
	echo "$pid" >"$dir/containerd.pid"
	local deadline=$(($(date +%s) + START_DEADLINE_SECONDS))
	until ctr -a "$sock" --timeout 1s version >/dev/null 2>&1; do
		if ! alive "$pid"; then
			tail -n 20 "$dir/containerd.log" >&2 || true
			die "containerd exited during start-up (log: $dir/containerd.log)"
		fi
		if (($(date +%s) >= deadline)); then
			tail -n 20 "$dir/containerd.log" >&2 || true
			die "containerd did not answer on $sock within ${START_DEADLINE_SECONDS}s"
		fi
		sleep 0.05
	done
	echo "$sock"
}

stop() {
	local dir=$1
	[[ $dir == /* ]] || dir="$PWD/$dir"
	[[ -d $dir ]] || return 0

	# Containers outlive containerd and their shims: kill the shims' children (the
	# containers' init processes) together with the shims.
	local pids=() sockets=() pid ns id
	while read -r pid ns id; do
		mapfile -t -O "${#pids[@]}" pids < <(children "$pid")
		pids+=("$pid")
		sockets+=("$(shim_socket "$dir" "$ns" "$id")")
	done < <(shims "$dir")
	if ((${#pids[@]} > 0)); then
		kill -KILL "${pids[@]}" 2>/dev/null || true
		wait_gone "${pids[@]}" || echo "containerd.sh: some shims outlived SIGKILL" >&2
		rm -f -- "${sockets[@]}"
	fi

	if [[ -f $dir/containerd.pid ]]; then
		pid=$(cat "$dir/containerd.pid")
		if alive "$pid"; then
			kill -TERM "$pid" 2>/dev/null || true
			if ! wait_gone "$pid"; then
				kill -KILL "$pid" 2>/dev/null || true
				wait_gone "$pid" || die "containerd (pid $pid) survived SIGKILL"
			fi
		fi
	fi

	# Tasks whose bundles remain were never deleted through containerd: remove their runc
	# state and cgroups, and their shims' sockets, which live outside DIR (under
	# /run/containerd, shared by all instances; names are unique per instance).
	local bundle
	for bundle in "$dir"/state/io.containerd.runtime.v2.task/*/*; do
		[[ -d $bundle ]] || continue
		id=${bundle##*/}
		ns=${bundle%/*}
		ns=${ns##*/}
		if [[ -d /run/containerd/runc/$ns/$id ]]; then
			timeout "$STOP_DEADLINE_SECONDS" runc --root "/run/containerd/runc/$ns" delete --force "$id" ||
				echo "containerd.sh: runc delete $id failed" >&2
		fi
		rm -f -- "$(shim_socket "$dir" "$ns" "$id")"
	done

	# Unmount what is left under DIR (rootfs overlays, shm, netns), deepest first.
	local mnt
	while read -r mnt; do
		umount -l "$mnt" 2>/dev/null || true
	done < <(awk -v dir="$dir/" 'index($5, dir) == 1 { print length($5) "\t" $5 }' /proc/self/mountinfo |
		sort -rn | cut -f2-)

	rm -rf -- "$dir"
}

main() {
	(($# == 2)) || usage
	case $1 in
	start) start "$2" ;;
	stop) stop "$2" ;;
	*) usage ;;
	esac
}

main "$@"
