package reports

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

// TestWriteJSON: a --json summary is written as the saved files are: NaN
// and infinities as null, and an embedded struct's fields flattened into
// the outer object as encoding/json does, the outer fields winning.
func TestWriteJSON(t *testing.T) {
	type inner struct {
		A float64 `json:"a"`
		B string  `json:"b"`
	}
	type outer struct {
		inner
		B string  `json:"b"`
		C float64 `json:"c"`
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, outer{inner: inner{A: math.NaN(), B: "inner"}, B: "outer", C: math.Inf(1)}); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if a, ok := got["a"]; !ok || a != nil {
		t.Errorf("a = %v (present %v), want null", a, ok)
	}
	if got["b"] != "outer" || got["c"] != nil || len(got) != 3 {
		t.Errorf("got %v, want a null, b outer, c null", got)
	}
}
