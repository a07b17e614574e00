// rsetcheck renders a ResourceSet the way the Flux Operator v0.58.1 does, for the fleet tests: it reads
// {"resourceSet": <object>, "providers": [<ResourceSetInputProvider with status.exportedInputs>]} on stdin and
// prints the objects the ResourceSet would apply as a JSON list. It is the kit's own code, built inside a copy
// of the operator's module (tests/fleet/operator.py) so that it may call the operator's internal packages:
// inputs.Combine (the input strategy) and builder.BuildResourceSetFromSpec (templates, dedup, disabled).
package main

import (
	"encoding/json"
	"fmt"
	"os"

	fluxcdv1 "github.com/controlplaneio-fluxcd/flux-operator/api/v1"
	"github.com/controlplaneio-fluxcd/flux-operator/internal/builder"
	"github.com/controlplaneio-fluxcd/flux-operator/internal/inputs"
)

type request struct {
	ResourceSet fluxcdv1.ResourceSet                `json:"resourceSet"`
	Providers   []fluxcdv1.ResourceSetInputProvider `json:"providers"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail(err)
	}
	rset := &req.ResourceSet
	rset.SetGroupVersionKind(fluxcdv1.GroupVersion.WithKind(fluxcdv1.ResourceSetKind))
	providers := make(map[inputs.ProviderKey]fluxcdv1.InputProvider)
	for i := range req.Providers {
		p := &req.Providers[i]
		p.SetGroupVersionKind(fluxcdv1.GroupVersion.WithKind(fluxcdv1.ResourceSetInputProviderKind))
		p.SetNamespace(rset.GetNamespace())
		providers[inputs.NewProviderKey(p)] = p
	}
	combined, err := inputs.Combine(rset, providers)
	if err != nil {
		fail(err)
	}
	out := []any{}
	if len(rset.Spec.InputsFrom) == 0 || len(combined) > 0 { // the controller's empty-inputs branch
		steps, err := builder.BuildResourceSetFromSpec(rset.Spec, combined)
		if err != nil {
			fail(err)
		}
		for _, obj := range builder.FlattenSteps(steps) {
			out = append(out, obj.Object)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
