# One peer cut from everyone for 20 s while everyone writes; it must catch
# up after it is reconnected. Serf declares it failed meanwhile
# (dead-node detection time in the report).
name  = "isolate-one"
peers = 30
seed  = 1
duration = "40s"

network {
  latency = "5ms"
  jitter  = "2ms"
}

workload {
  rate    = 20
  reads   = 0.2
  deletes = 0.2
  keys    = 60
}

event {
  at     = "5s"
  action = "isolate"
  node   = 7
}

event {
  at     = "25s"
  action = "heal"
}

event {
  at     = "10s"
  action = "crash"
  node   = 3
}

event {
  at     = "35s"
  action = "restart"
}

expect {
  converge_within = "30s"
}
