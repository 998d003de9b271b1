# 1,000 real serf peers for 10 virtual minutes, join included: the scale
# acceptance run (first step of `make sim-big`). memberlist and serf run
# with their LAN defaults (the join storm included: every peer
# re-broadcasts the alive message of every member it learns, 16 times at
# this size; see docs/SIM.md, "Scale and cost"). Light workload: 1 write/s
# and 1 local read/s on random peers; a 50/50 partition in the last minute
# of the fault phase, healed at its end; then the run waits for equal
# digests (the time is the partition-heal figure at N = 1,000).
name  = "soak-1000"
peers = 1000
seed  = 1
join_stagger = "10ms"
idle     = "10s"
duration = "565s"

network {
  latency = "1ms"
  jitter  = "1ms"
}

workload {
  rate    = 2
  reads   = 0.5
  deletes = 0.1
  keys    = 500
}

event {
  at     = "505s"
  action = "partition"
  groups = 2
}

expect {
  converge_within = "120s"
}
