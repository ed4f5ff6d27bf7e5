defmodule Fenix.Token.KeyGenerator do
  @moduledoc false
  # The keys of Fenix.Token: PBKDF2 (RFC 8018 §5.2) with HMAC over the secret key base
  # and a salt, as Plug.Crypto.KeyGenerator derives them, so that a key base gives
  # Fenix the same keys as Phoenix.
  #
  # Deriving a key runs `key_iterations` HMACs (1,000 by default), and every sign,
  # verify, encrypt and decrypt needs one: so derived keys are kept in a public ETS
  # table that this process owns (Fenix.Application starts it), read without a call.
  # Plug.Crypto keeps its cache unbounded because key bases and salts are constants of
  # the application; a token context can also be a string given at run time, so this
  # table is bounded: once it holds @max_entries keys it is emptied and fills again.
  # Entries are keyed by a hash of the inputs, so the key bases themselves are not
  # stored. Without the table (the :fenix application not started) keys are derived
  # on every call.

  use GenServer

  @table __MODULE__
  @max_entries 1_024

  @doc false
  def max_entries, do: @max_entries

  def start_link(_opts), do: GenServer.start_link(__MODULE__, nil, name: __MODULE__)

  @doc "The key derived from `secret` and `salt`: `length` bytes, with HMAC-`digest`."
  @spec derive(binary(), binary(), pos_integer(), pos_integer(), :sha256 | :sha384 | :sha512) :: binary()
  def derive(secret, salt, iterations, length, digest) do
    cached({secret, salt, iterations, length, digest}, fn ->
      :crypto.pbkdf2_hmac(digest, secret, salt, iterations, length)
    end)
  end

  defp cached(inputs, derive) do
    case :ets.whereis(@table) do
      :undefined ->
        derive.()

      table ->
        id = :crypto.hash(:sha256, :erlang.term_to_binary(inputs))

        case :ets.lookup(table, id) do
          [{^id, key}] ->
            key

          [] ->
            key = derive.()
            # Two processes may empty it at once, or insert past the bound by a few:
            # harmless, the bound holds within the number of concurrent callers.
            if :ets.info(table, :size) >= @max_entries, do: :ets.delete_all_objects(table)
            :ets.insert(table, {id, key})
            key
        end
    end
  end

  @impl true
  def init(nil) do
    :ets.new(@table, [:named_table, :public, :set, read_concurrency: true])
    {:ok, nil}
  end
end
