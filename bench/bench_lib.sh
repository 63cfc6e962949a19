# Helpers shared by the comparison scripts (sourced; they keep the PIDs they
# started in the array `pids`, which their cleanup stops).

# port: a free TCP port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# listening PORT: something accepts on 127.0.0.1:PORT.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# cpu_ns PID...: the processes' CPU time in ns together, all their threads
# (the kernel's process CPU clock, clock_getcpuclockid(3)): /proc/PID/stat
# counts in clock ticks (10 ms), too coarse for 1,000 operations of a few
# hundred µs each.
cpu_ns() {
  python3 -c 'import sys, time; print(sum(time.clock_gettime_ns(((~int(p)) << 3) | 2) for p in sys.argv[1:]))' "$@"
}
# unlist PID: a process waited for leaves `pids` (its number may be reused by
# someone else's process later).
unlist() {
  local i
  for i in "${!pids[@]}"; do [ "${pids[$i]}" != "$1" ] || unset "pids[$i]"; done
}
