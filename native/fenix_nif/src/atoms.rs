//! Atoms the NIF sends or returns.

rustler::atoms! {
    ok,
    error,
    nil,
    closed,
    stale,
    dirty,
    binary,
    fenix_log,
    warning,
    info,
    debug,
    // messages to the endpoint's dispatcher
    fenix_connect,
    fenix_join,
    // messages to a channel process
    fenix_in,
    fenix_leave,
    fenix_out,
    fenix_closed,
    fenix_resume,
    duplicate_join,
    // a sender must wait for :fenix_resume
    wait,
    // connect_info keys
    peer_data,
    address,
    port,
    uri,
    user_agent,
    x_headers,
    auth_token,
    // presence
    fenix_presence_diff,
    metas,
    already_tracked,
    nopresence,
    meta_too_large,
    key_too_long,
    presence_full,
    invalid_meta,
    // errors
    unsupported_term,
    slow_client,
    too_large,
    held_messages,
    encode,
    protocol,
    io,
    invalid_config,
    bind_failed,
    eaddrinuse,
    noproc,
    // serializers
    v1,
    v2,
}
