defmodule Fenix.Native do
  @moduledoc false
  # The engine's NIFs (native/fenix_nif). Only Fenix's own modules call these.

  @on_load :load_nif

  def load_nif do
    path = :filename.join(:code.priv_dir(:fenix), ~c"native/libfenix_nif")
    :erlang.load_nif(path, 0)
  end

  # A sender told `:wait` has as much waiting in the engine as it may (its lane is
  # full): what it sent is taken, and the engine sends it `:fenix_resume` once half of
  # it is carried out. Only the process that floods waits; the timeout is a guard
  # against an engine that stopped meanwhile.
  @resume_timeout 5_000

  @doc false
  @spec await_pace(result) :: result when result: term()
  def await_pace(:wait) do
    receive do
      :fenix_resume -> :ok
    after
      @resume_timeout -> :ok
    end
  end

  def await_pace(result), do: result

  @type endpoint :: reference()
  @type conn :: reference()
  @type channel :: reference()
  # A client's ref or join_ref: any JSON value, as the engine decoded it (a string, a
  # number, nil, a map...); handed back as it came.
  @type client_ref :: Fenix.Socket.client_ref()
  @type join :: {topic :: String.t(), join_ref :: client_ref(), ref :: client_ref()}

  @spec endpoint_start(pid(), map()) ::
          {:ok, endpoint()}
          | {:error, :eaddrinuse | :invalid_config | :noproc | {:bind_failed | :tls, String.t()}}
  def endpoint_start(_dispatcher, _options), do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_defaults() :: %{
          ip: String.t(),
          port: :inet.port_number(),
          https_port: :inet.port_number(),
          engine_threads: non_neg_integer(),
          tune_allocator: boolean(),
          socket: %{atom() => pos_integer() | nil | map()}
        }
  def endpoint_defaults, do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_port(endpoint()) :: :inet.port_number()
  def endpoint_port(_endpoint), do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_https_port(endpoint()) :: :inet.port_number() | nil
  def endpoint_https_port(_endpoint), do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_stop(endpoint()) :: :ok
  def endpoint_stop(_endpoint), do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_subscribers(endpoint(), String.t()) :: {non_neg_integer(), non_neg_integer()}
  def endpoint_subscribers(_endpoint, _topic), do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_log_to(pid()) :: :ok
  def endpoint_log_to(_pid), do: :erlang.nif_error(:nif_not_loaded)

  # Errors, one mapping for every NIF (native/fenix_nif/src/error.rs):
  #   :closed                 the connection is gone
  #   :stale                  the join was superseded (joined again, or left)
  #   :slow_client            the client does not read; its connection is being dropped
  #   :unsupported_term       the payload cannot be JSON
  #   {:too_large, text}      a message over the socket's max_frame_size
  #   {:held_messages, text}  a client sent too much before its join was answered
  #   {:protocol, text}       a peer broke the protocol
  #   {:encode, text}         a message cannot be encoded (a binary body for vsn 1.0.0,
  #                           a header field over 255 bytes in a binary frame, or a
  #                           ref that is a map or list there)
  #   {:io, text}             a socket error
  @type error :: {:error, :closed | :stale | :slow_client | :unsupported_term | {atom(), String.t()}}
  @type pace :: :ok | :wait

  @spec conn_accept(conn(), String.t() | nil, binary(), String.t() | nil) :: :ok | {:error, :closed}
  def conn_accept(_conn, _socket_id, _socket, _session_token), do: :erlang.nif_error(:nif_not_loaded)

  @type transport :: reference()

  @spec conn_accept_transport(conn(), wants_control :: boolean()) :: {:ok, transport()} | {:error, :closed}
  def conn_accept_transport(_conn, _wants_control), do: :erlang.nif_error(:nif_not_loaded)

  @spec conn_refuse(conn()) :: :ok | {:error, :closed}
  def conn_refuse(_conn), do: :erlang.nif_error(:nif_not_loaded)

  @spec conn_joined(conn(), join(), map(), [String.t()]) ::
          {pace(), channel(), conn_id :: non_neg_integer()} | {:error, :closed | :stale | :unsupported_term}
  def conn_joined(_conn, _join, _response, _intercepts), do: :erlang.nif_error(:nif_not_loaded)

  @spec conn_join_failed(conn(), join(), map()) :: pace() | {:error, :closed | :stale | :unsupported_term}
  def conn_join_failed(_conn, _join, _response), do: :erlang.nif_error(:nif_not_loaded)

  @spec conn_join_unmatched(conn(), join()) :: pace() | {:error, :closed | :stale}
  def conn_join_unmatched(_conn, _join), do: :erlang.nif_error(:nif_not_loaded)

  # A payload of more than 4,096 terms answers :dirty: repeat the call on the _dirty
  # variant, which encodes it on a dirty scheduler.
  @spec channel_reply(channel(), client_ref(), atom(), term()) :: pace() | :dirty | error()
  def channel_reply(_channel, _ref, _status, _payload), do: :erlang.nif_error(:nif_not_loaded)

  @spec channel_push(channel(), String.t(), term()) :: pace() | :dirty | error()
  def channel_push(_channel, _event, _payload), do: :erlang.nif_error(:nif_not_loaded)

  @spec channel_push_dirty(channel(), String.t(), term()) :: pace() | error()
  def channel_push_dirty(_channel, _event, _payload), do: :erlang.nif_error(:nif_not_loaded)

  @spec channel_reply_dirty(channel(), client_ref(), atom(), term()) :: pace() | error()
  def channel_reply_dirty(_channel, _ref, _status, _payload), do: :erlang.nif_error(:nif_not_loaded)

  @spec channel_close(channel()) :: :ok | {:error, :closed}
  def channel_close(_channel), do: :erlang.nif_error(:nif_not_loaded)

  @spec channel_handled(channel(), non_neg_integer()) :: :ok
  def channel_handled(_channel, _size), do: :erlang.nif_error(:nif_not_loaded)

  # A message of more than 1 MiB answers :dirty: repeat the call on the _dirty variant.
  @spec transport_push(transport(), :text | :binary, binary()) :: pace() | :dirty | {:error, :closed | :slow_client}
  def transport_push(_transport, _opcode, _data), do: :erlang.nif_error(:nif_not_loaded)

  @spec transport_push_dirty(transport(), :text | :binary, binary()) :: pace() | {:error, :closed | :slow_client}
  def transport_push_dirty(_transport, _opcode, _data), do: :erlang.nif_error(:nif_not_loaded)

  @spec transport_close(transport(), graceful :: boolean()) :: pace()
  def transport_close(_transport, _graceful), do: :erlang.nif_error(:nif_not_loaded)

  @spec transport_handled(transport(), non_neg_integer()) :: :ok
  def transport_handled(_transport, _size), do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_drain(endpoint(), String.t(), pos_integer()) :: {non_neg_integer(), non_neg_integer(), [pid()]}
  def endpoint_drain(_endpoint, _path, _batch), do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_broadcast(endpoint(), String.t(), String.t(), term(), non_neg_integer() | nil, pid() | nil) ::
          pace() | :dirty | {:error, :unsupported_term | {:encode, String.t()}}
  def endpoint_broadcast(_endpoint, _topic, _event, _payload, _exclude, _from),
    do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_broadcast_dirty(endpoint(), String.t(), String.t(), term(), non_neg_integer() | nil, pid() | nil) ::
          pace() | {:error, :unsupported_term | {:encode, String.t()}}
  def endpoint_broadcast_dirty(_endpoint, _topic, _event, _payload, _exclude, _from),
    do: :erlang.nif_error(:nif_not_loaded)

  @type pubsub :: reference()

  @spec pubsub_new() :: pubsub()
  def pubsub_new, do: :erlang.nif_error(:nif_not_loaded)

  @spec pubsub_subscribe(pubsub(), String.t(), term()) :: :ok
  def pubsub_subscribe(_pubsub, _topic, _metadata), do: :erlang.nif_error(:nif_not_loaded)

  @spec pubsub_unsubscribe(pubsub(), String.t()) :: :ok
  def pubsub_unsubscribe(_pubsub, _topic), do: :erlang.nif_error(:nif_not_loaded)

  @spec pubsub_dispatch(pubsub(), String.t(), term(), pid() | nil) :: :ok | :dirty
  def pubsub_dispatch(_pubsub, _topic, _message, _from), do: :erlang.nif_error(:nif_not_loaded)

  @spec pubsub_dispatch_dirty(pubsub(), String.t(), term(), pid() | nil) :: :ok
  def pubsub_dispatch_dirty(_pubsub, _topic, _message, _from), do: :erlang.nif_error(:nif_not_loaded)

  @spec pubsub_entries(pubsub(), String.t()) :: [{pid(), term()}]
  def pubsub_entries(_pubsub, _topic), do: :erlang.nif_error(:nif_not_loaded)

  @type presence :: reference()

  @spec presence_start(endpoint(), pos_integer() | nil, pos_integer() | nil, pos_integer() | nil, pid() | nil, boolean()) ::
          {:ok, presence()}
  def presence_start(_endpoint, _tick_ms, _max_meta_bytes, _max_entries, _diffs_to, _broadcast),
    do: :erlang.nif_error(:nif_not_loaded)

  @spec presence_track(presence(), pid(), String.t(), String.t(), map()) :: {:ok, String.t()} | {:error, term()}
  def presence_track(_presence, _pid, _topic, _key, _meta), do: :erlang.nif_error(:nif_not_loaded)

  @spec presence_untrack(presence(), pid(), String.t(), String.t()) :: :ok
  def presence_untrack(_presence, _pid, _topic, _key), do: :erlang.nif_error(:nif_not_loaded)

  @spec presence_update(presence(), pid(), String.t(), String.t(), map()) :: {:ok, String.t()} | {:error, term()}
  def presence_update(_presence, _pid, _topic, _key, _meta), do: :erlang.nif_error(:nif_not_loaded)

  @spec presence_meta(presence(), pid(), String.t(), String.t()) :: map() | nil
  def presence_meta(_presence, _pid, _topic, _key), do: :erlang.nif_error(:nif_not_loaded)

  @typedoc "What `presence_list/2` read: the topic's version, or nil when it was empty."
  @type listed :: non_neg_integer() | nil

  @spec presence_list(presence(), String.t()) :: {%{String.t() => %{metas: [map()]}}, listed()}
  def presence_list(_presence, _topic), do: :erlang.nif_error(:nif_not_loaded)

  @spec presence_push_listed(presence(), channel(), String.t(), listed(), String.t()) :: :ok | :wait | :changed | {:error, atom()}
  def presence_push_listed(_presence, _channel, _topic, _listed, _event), do: :erlang.nif_error(:nif_not_loaded)

  @spec presence_push_state(presence(), channel(), String.t(), String.t()) :: :ok | :wait | {:error, atom()}
  def presence_push_state(_presence, _channel, _topic, _event), do: :erlang.nif_error(:nif_not_loaded)

  @spec presence_get_by_key(presence(), String.t(), String.t()) :: %{metas: [map()]} | []
  def presence_get_by_key(_presence, _topic, _key), do: :erlang.nif_error(:nif_not_loaded)
end
