//! The process's own resources, read from `/proc/self` at collection time (Linux; on other
//! systems the readings are absent): resident memory, CPU time, open file descriptors.

/// Resident memory in bytes (`VmRSS` of `/proc/self/status`).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time in seconds, user and system (`utime` and `stime` of `/proc/self/stat`, in
/// the kernel's fixed USER_HZ of 100 ticks a second).
pub fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), the 12th and 13th after the name.
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? as f64 / 100.0, ticks(12)? as f64 / 100.0))
}

/// Open file descriptors (entries of `/proc/self/fd`).
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_cpu_and_files() {
        assert!(resident_bytes().unwrap() > 1 << 20);
        let (user, system) = cpu_seconds().unwrap();
        assert!(user >= 0.0 && system >= 0.0);
        // Other tests open and close files in parallel: only a lower bound is stable
        // (standard input, output and error, and the file held here).
        let _file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(open_fds().unwrap() >= 4);
    }
}
