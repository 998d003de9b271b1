package peer

import (
	"net/http"
	"net/http/pprof"
)

// debugPprof serves Go's profiler when the agent runs with enable_debug:
// /debug/pprof/ lists the profiles, /debug/pprof/profile?seconds=N takes a
// CPU profile, /debug/pprof/trace?seconds=N an execution trace.
func (s *apiServer) debugPprof(w http.ResponseWriter, r *http.Request, rest string) error {
	if !s.a.local.options().EnableDebug {
		return errorf(http.StatusNotFound, "profiling is off: start the agent with -enable-debug (enable_debug = true)")
	}
	switch rest {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r)
	}
	return nil
}
