// Package flame holds the one flame graph script that report.html and
// autoprof ui share: flame.js draws the calling-context tree top down, bottom
// up and as a function's callers and callees (sandwich), with a search box
// and click to zoom, and the search's decisions as a timeline, from the
// JSON that reports writes (reports.FlameJSON). report.html inlines it;
// the UI serves it as /flame.js.
package flame

import _ "embed"

// JS is the script. It defines window.AutoprofFlame: mount(box, data)
// draws a flame graph and returns its controls, timeline(box, data) the
// decisions by round.
//
//go:embed flame.js
var JS string
