-- User-space faults a host's kernel reported this boot (segfault, traps, arm64 unhandled
-- exception, fatal signal), per program, as its last heartbeat counted them (HostFacts
-- user_faults, at most 64 programs). Many unrelated programs faulting on one host is a classic
-- sign of bad memory: the bad-host score reads this table. Replaced on every heartbeat.
CREATE TABLE host_user_faults (
    hostname TEXT NOT NULL,
    program TEXT NOT NULL,
    faults BIGINT NOT NULL,
    PRIMARY KEY (hostname, program)
)
;
