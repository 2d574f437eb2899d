// Package instrument holds the plain values of instrumentation and their
// rules: a Spec says where an instrument goes (a Point), what it measures
// (a Kind) and for whom (a Target); a Reading says what the instruments
// measured, by calling context (a Path), with the Misses that make it a
// lower bound. It also holds the rules every package applies to them:
// ParseSpec and Spec.String, Reading.Sub, HistQuantile, which functions
// are syscall entries, and the interfaces and sentinel errors of a
// backend.
//
// It touches no kernel: package splice turns a Spec into a live
// Instrument, and the pure packages (search, reports) plan and report
// with these values alone.
package instrument
