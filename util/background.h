/* SPDX-License-Identifier: Apache-2.0 */
/* Work that must not compete with serving: a thread of the pool lowers its own CPU priority
 * (nice 19) for the length of a long job (a GC run, the background walk of the store, the
 * integrity check), so that on a busy machine the event loop and the clients' hits take the
 * CPU first, and gives it back afterwards.
 *
 * Lowering is only done when the thread can raise it back (CAP_SYS_NICE, or RLIMIT_NICE allowing
 * the niceness it had), since the pool's threads run other work afterwards; otherwise
 * background_enter leaves the priority alone. Linux nice values are per thread. */
#ifndef REGCACHE_UTIL_BACKGROUND_H
#define REGCACHE_UTIL_BACKGROUND_H

#define BACKGROUND_NICE 19

struct background {
    int lowered; /* 1 when background_enter lowered the priority */
    int nice;    /* what it was */
};

/* Lowers the calling thread's priority when it can be raised back. 0 when lowered, -EPERM
 * when it could not be raised back (nothing done), or another negative errno (nothing done). */
int background_enter(struct background *b);
/* Gives back the priority background_enter took. 0, or a negative errno. */
int background_leave(struct background *b);

/* Whether a thread at niceness `from` may go back to it after BACKGROUND_NICE, given the soft
 * RLIMIT_NICE and CAP_SYS_NICE (pure). */
int background_can_return(int from, unsigned long long rlimit_nice, int cap_sys_nice);

#endif
