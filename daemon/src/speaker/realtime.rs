//! Real-time care for the playout thread: SCHED_FIFO and locked memory.

/// Priority of the playout thread under SCHED_FIFO (below the kernel's IRQ threads at 50..,
/// above ordinary processes).
pub(crate) const PRIORITY: i32 = 40;

/// Asks for SCHED_FIFO on the calling thread; logs and carries on at normal priority when
/// not permitted.
pub(crate) fn promote_current_thread() {
    let param = libc::sched_param {
        sched_priority: PRIORITY,
    };
    // SAFETY: plain syscall on the calling thread with a valid parameter struct.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        log::info!("playout thread: SCHED_FIFO priority {PRIORITY}");
    } else {
        log::info!(
            "playout thread: no real-time priority ({}); running at normal priority",
            std::io::Error::last_os_error()
        );
    }
}

/// Locks the process's memory so the playout path never waits on a page fault; logs and
/// carries on when not permitted.
/// Locks memory on fault (MCL_ONFAULT): every page the process touches stays resident, so
/// the playout path never waits for the disk once it has run, but the parts of the binary
/// and libraries it never touches are not loaded just to be locked (plain MCL_CURRENT made a
/// speaker 13 MiB resident, most of it code it never runs).
pub(crate) fn lock_memory() {
    let flags = libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT;
    // SAFETY: mlockall has no memory-safety preconditions.
    if unsafe { libc::mlockall(flags) } == 0 {
        log::info!("memory locked (on fault)");
        return;
    }
    // Kernels before 4.4 know no MCL_ONFAULT.
    // SAFETY: as above.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
        log::info!("memory locked");
    } else {
        log::info!(
            "memory not locked ({}); page faults may delay playout",
            std::io::Error::last_os_error()
        );
    }
}
