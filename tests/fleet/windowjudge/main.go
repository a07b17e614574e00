// Command windowjudge answers, with the Flux Operator's own scheduler (internal/schedule at the pinned version, the
// code a ResourceSetInputProvider runs), whether a site's window schedule is valid, open at a moment, and when
// it next fires. One JSON request per line on stdin, one JSON answer per line on stdout.
package main

import (
	"bufio"
	"encoding/json"
	"os"
	"time"

	fluxcdv1 "github.com/controlplaneio-fluxcd/flux-operator/api/v1"
	"github.com/controlplaneio-fluxcd/flux-operator/internal/schedule"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type request struct {
	Cron     string `json:"cron"`
	TimeZone string `json:"timeZone"`
	Window   string `json:"window"`
	Timeout  string `json:"timeout"`
	At       string `json:"at"`
}

type answer struct {
	Error string `json:"error,omitempty"`
	Open  bool   `json:"open"`
	Next  string `json:"next,omitempty"`
}

func judge(r request) answer {
	window, err := time.ParseDuration(r.Window)
	if err != nil {
		return answer{Error: err.Error()}
	}
	timeout, err := time.ParseDuration(r.Timeout)
	if err != nil {
		return answer{Error: err.Error()}
	}
	at, err := time.Parse(time.RFC3339, r.At)
	if err != nil {
		return answer{Error: err.Error()}
	}
	spec := fluxcdv1.Schedule{Cron: r.Cron, TimeZone: r.TimeZone, Window: metav1.Duration{Duration: window}}
	scheduler, err := schedule.NewScheduler([]fluxcdv1.Schedule{spec}, timeout)
	if err != nil {
		return answer{Error: err.Error()}
	}
	next := scheduler.Next(at)
	return answer{Open: scheduler.ShouldReconcile(at), Next: next.When.Time.UTC().Format(time.RFC3339)}
}

func main() {
	in, out := bufio.NewScanner(os.Stdin), json.NewEncoder(os.Stdout)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var r request
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			_ = out.Encode(answer{Error: err.Error()})
			continue
		}
		_ = out.Encode(judge(r))
	}
}
