/* SPDX-License-Identifier: GPL-2.0 */
/*
 * delta.h - the handlers' clock arithmetic, apart from measure.c so that a
 * host test compiles and runs it (kmod/splicer's TestClockDeltas): it needs
 * u64, s64 and __always_inline only.
 */
#ifndef AUTOPROF_DELTA_H
#define AUTOPROF_DELTA_H

/*
 * ap_delta returns now - then, 0 where then is later: a task that moved
 * between CPUs read two clocks, and the second may run behind the first.
 * The difference is taken modulo 2^64, so that a clock that wrapped still
 * gives the time between.
 */
static __always_inline u64 ap_delta(u64 now, u64 then)
{
	return (s64)(now - then) > 0 ? now - then : 0;
}

/*
 * ap_excl returns a frame's exclusive time: its inclusive time less its
 * children's, 0 where they add up to more (their ends read on other CPUs).
 */
static __always_inline u64 ap_excl(u64 incl, u64 child)
{
	return incl > child ? incl - child : 0;
}

#endif
