# Rolling restart: every peer crashes (no graceful leave) and comes back
# with its persisted replica state, one every 3 s, down for 1.5 s each.
name  = "rolling-restart"
peers = 20
seed  = 1
duration = "70s"

network {
  latency = "5ms"
  jitter  = "5ms"
}

workload {
  rate    = 20
  reads   = 0.3
  deletes = 0.2
  keys    = 50
}

event {
  at     = "2s"
  action = "rolling"
  step   = "3s"
  down   = "1500ms"
}

expect {
  converge_within = "30s"
}
