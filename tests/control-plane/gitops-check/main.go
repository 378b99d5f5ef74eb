// Command folio-gitops-check reads a RenderJob's health the way GitOps tools read it,
// with their own libraries, so that folio's tests check what Flux and Argo CD will show
// and not what an imitation of them would.
//
//	folio-gitops-check kstatus < object.json       (upstream kstatus, sigs.k8s.io/cli-utils)
//	folio-gitops-check flux-kstatus < object.json  (Flux's fork, github.com/fluxcd/cli-utils)
//	folio-gitops-check argocd-health SCRIPT.lua < object.json
//
// Each reads one Kubernetes object as JSON on stdin and prints
// {"status": "...", "message": "..."}. A script that fails to run (a Lua error, a
// timeout, a result that is not a table) is an error: exit status 1 with the reason on
// stderr, where Argo CD would show the resource as Unknown with that reason.
//
// build.sh builds it beside kubectl with -X main.sourceHash=<hash of this folder>;
// `folio-gitops-check source-hash` prints it, so build.sh rebuilds exactly when these
// sources change.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	fluxstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// sourceHash is set by build.sh at link time.
var sourceHash = "unknown"

// health is what both checks print; the JSON names are those of Argo CD's
// health.HealthStatus, which the Lua result is decoded into.
type health struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "source-hash" {
		fmt.Println(sourceHash)
		return
	}
	var result health
	var err error
	switch {
	case len(os.Args) == 2 && os.Args[1] == "kstatus":
		result, err = withObject(kstatus)
	case len(os.Args) == 2 && os.Args[1] == "flux-kstatus":
		result, err = withObject(fluxKstatus)
	case len(os.Args) == 3 && os.Args[1] == "argocd-health":
		var script []byte
		if script, err = os.ReadFile(os.Args[2]); err == nil {
			result, err = withObject(func(obj *unstructured.Unstructured) (health, error) {
				return argocdHealth(obj, string(script))
			})
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: folio-gitops-check kstatus | flux-kstatus | argocd-health SCRIPT.lua | source-hash  (the object as JSON on stdin)")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "folio-gitops-check: %v\n", err)
		os.Exit(1)
	}
	// Both fields always, so that an empty status is visible as "".
	out, _ := json.Marshal(struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}{result.Status, result.Message})
	fmt.Println(string(out))
}

// withObject decodes stdin the way client-go decodes objects for Flux and Argo CD
// (apimachinery's unstructured JSON): whole numbers become int64, which kstatus's
// NestedInt64 needs and Argo CD's Lua conversion handles.
func withObject(check func(*unstructured.Unstructured) (health, error)) (health, error) {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return health{}, err
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		return health{}, fmt.Errorf("reading the object: %w", err)
	}
	return check(obj)
}

// kstatus is upstream kstatus (sigs.k8s.io/cli-utils), the library that defines what
// the standard conditions (Reconciling, Stalled, Ready) and observedGeneration mean.
func kstatus(obj *unstructured.Unstructured) (health, error) {
	res, err := status.Compute(obj)
	if err != nil {
		return health{}, err
	}
	return health{Status: res.Status.String(), Message: res.Message}, nil
}

// fluxKstatus is what Flux computes: kustomize-controller's health checks (wait: true)
// go through github.com/fluxcd/pkg/ssa, which imports Flux's fork of cli-utils and not
// upstream (as does Helm 4's --wait). The fork's status package started as a copy of
// upstream's; computing with both lets the tests notice when the two drift apart.
// go.mod pins the fork at the version fluxcd/pkg/ssa v0.78.0 requires (v1.3.0), the
// newest ssa whose go.mod accepts Go 1.26.
func fluxKstatus(obj *unstructured.Unstructured) (health, error) {
	res, err := fluxstatus.Compute(obj)
	if err != nil {
		return health{}, err
	}
	return health{Status: res.Status.String(), Message: res.Message}, nil
}

// argocdHealth runs a health script as Argo CD does for a resource.customizations.health
// entry of argocd-cm. It follows argo-cd's util/lua/lua.go, VM.runLuaWithResourceActionParameters
// and VM.ExecuteHealthLua, as of release v3.5.1 and master 37ee0097cf (2026-08; the same
// steps, master only caches compiled scripts), both on gopher-lua v1.1.2 and gopher-json:
//   - lua.NewState with SkipOpenLibs (argocd-cm's resource.customizations.useOpenLibs
//     is off unless set), then only package, base, table and a "safe" os opened; so a
//     script has no string, math or io library and must build messages with `..`;
//   - a one-second deadline through the state's context;
//   - globals `obj` (the object, converted as decodeValue does) and `actionParams`
//     (empty for health);
//   - the value left on top of the stack read as a table, encoded with gopher-json and
//     decoded into {status, message}; nil is an empty result, any other type an error,
//     a status outside Argo CD's set is Unknown "Lua returned an invalid health status".
func argocdHealth(obj *unstructured.Unstructured, script string) (health, error) {
	// Before any script, gitops-engine/pkg/health/health.go GetResourceHealth shows an
	// object being deleted (without Argo CD's hook finalizer) as Progressing.
	if obj.GetDeletionTimestamp() != nil && !slices.Contains(obj.GetFinalizers(), "argocd.argoproj.io/hook-finalizer") {
		return health{Status: "Progressing", Message: "Pending deletion"}, nil
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return health{}, err
		}
	}
	l.PreloadModule(lua.OsLibName, loadSafeOs)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)

	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", toLua(l, obj.Object))

	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	// Argo CD drops the Lua stack trace from run-time errors before showing them.
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		apiErr.StackTrace = ""
	}
	if err != nil {
		return health{}, err
	}

	returned := l.Get(-1)
	switch returned.Type() {
	case lua.LTNil:
		return health{}, nil
	case lua.LTTable:
	default:
		return health{}, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return health{}, err
	}
	var result health
	if err := json.Unmarshal(encoded, &result); err != nil {
		// An empty Lua table encodes as [], which Argo CD takes for an empty result.
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return health{}, nil
		}
		return health{}, err
	}
	switch result.Status {
	case "Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing":
		return result, nil
	}
	return health{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
}

// toLua converts the decoded object as Argo CD's decodeValue does: numbers (int64 from
// apimachinery, float64) become Lua numbers, json.Number a string, and anything else
// nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		array := l.CreateTable(len(v), 0)
		for _, item := range v {
			array.Append(toLua(l, item))
		}
		return array
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}

// Argo CD's safe os (util/lua/oslib_safe.go) offers os.time and os.date only. This one
// offers os.time alone: folio's script reads no clock, and a script that calls os.date
// fails here loudly instead of passing on a formatter that differs from Argo CD's.
var safeOsFunctions = map[string]lua.LGFunction{"time": osTime}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.OsLibName, safeOsFunctions))
	return 1
}

func loadSafeOs(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFunctions))
	return 1
}

// osTime is os.time(): now, or the time a {year, month, day, hour, min, sec} table
// names (hour 12 by default, local time), in Unix seconds.
func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	table := l.CheckTable(1)
	field := func(key string, fallback int) int {
		if n, ok := table.RawGetString(key).(lua.LNumber); ok {
			return int(n)
		}
		return fallback
	}
	t := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(t.Unix()))
	return 1
}
