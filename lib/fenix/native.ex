defmodule Fenix.Native do
  @moduledoc false
  # The engine's NIFs (native/fenix_nif). Only Fenix's own modules call these.

  @on_load :load_nif

  def load_nif do
    path = :filename.join(:code.priv_dir(:fenix), ~c"native/libfenix_nif")
    :erlang.load_nif(path, 0)
  end

  @type endpoint :: reference()
  @type conn :: reference()
  @type channel :: reference()
  @type join :: {topic :: String.t(), join_ref :: String.t() | nil, ref :: String.t() | nil}

  @spec endpoint_start(pid(), map()) :: {:ok, endpoint()} | {:error, term()}
  def endpoint_start(_dispatcher, _options), do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_port(endpoint()) :: :inet.port_number()
  def endpoint_port(_endpoint), do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_stop(endpoint()) :: :ok
  def endpoint_stop(_endpoint), do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_subscribers(endpoint(), String.t()) :: {non_neg_integer(), non_neg_integer()}
  def endpoint_subscribers(_endpoint, _topic), do: :erlang.nif_error(:nif_not_loaded)

  @spec endpoint_log_to(pid()) :: :ok
  def endpoint_log_to(_pid), do: :erlang.nif_error(:nif_not_loaded)

  @spec conn_accept(conn(), String.t() | nil, binary()) :: :ok | {:error, :closed}
  def conn_accept(_conn, _socket_id, _socket), do: :erlang.nif_error(:nif_not_loaded)

  @spec conn_refuse(conn()) :: :ok | {:error, :closed}
  def conn_refuse(_conn), do: :erlang.nif_error(:nif_not_loaded)

  @spec conn_joined(conn(), join(), term(), [String.t()]) ::
          {:ok, channel()} | {:error, :closed | :stale | :unsupported_term}
  def conn_joined(_conn, _join, _response, _intercepts), do: :erlang.nif_error(:nif_not_loaded)

  @spec conn_join_failed(conn(), join(), term()) ::
          :ok | {:error, :closed | :stale | :unsupported_term}
  def conn_join_failed(_conn, _join, _response), do: :erlang.nif_error(:nif_not_loaded)

  @spec conn_join_unmatched(conn(), join()) :: :ok | {:error, :closed | :stale}
  def conn_join_unmatched(_conn, _join), do: :erlang.nif_error(:nif_not_loaded)

  @spec channel_reply(channel(), String.t() | nil, :ok | :error, term()) ::
          :ok | {:error, :closed | :overloaded | :unsupported_term}
  def channel_reply(_channel, _ref, _status, _payload), do: :erlang.nif_error(:nif_not_loaded)

  @spec channel_push(channel(), String.t(), term()) :: :ok | {:error, :closed | :overloaded | :unsupported_term}
  def channel_push(_channel, _event, _payload), do: :erlang.nif_error(:nif_not_loaded)

  @spec channel_close(channel()) :: :ok | {:error, :closed}
  def channel_close(_channel), do: :erlang.nif_error(:nif_not_loaded)

  @spec channel_conn_id(channel()) :: non_neg_integer()
  def channel_conn_id(_channel), do: :erlang.nif_error(:nif_not_loaded)

  @spec pubsub_broadcast(endpoint(), String.t(), String.t(), term(), non_neg_integer() | nil) ::
          :ok | :dirty | {:error, :unsupported_term | :overloaded}
  def pubsub_broadcast(_endpoint, _topic, _event, _payload, _exclude),
    do: :erlang.nif_error(:nif_not_loaded)

  @spec pubsub_broadcast_dirty(endpoint(), String.t(), String.t(), term(), non_neg_integer() | nil) ::
          :ok | {:error, :unsupported_term | :overloaded}
  def pubsub_broadcast_dirty(_endpoint, _topic, _event, _payload, _exclude),
    do: :erlang.nif_error(:nif_not_loaded)
end
