defmodule Fenix.Token do
  @moduledoc """
  Signed and encrypted tokens, for channel and API authentication. It mirrors
  `Phoenix.Token`: the same functions, options, defaults and return values, and the
  same token bytes, so a token that a Phoenix application made verifies here and the
  other way round, given the same secret key base.

  A signed token carries its data readable by anyone who holds it, and tamper-proof:
  fit for a user id, not for a secret. An encrypted token hides its data too.

  ## Example

  Sign a token where the application knows the user, such as a controller (of a
  Phoenix application, here, or any HTTP handler), and hand it to the client:

      def create(conn, %{"email" => email, "password" => password}) do
        user = MyApp.Accounts.authenticate!(email, password)
        json(conn, %{token: Fenix.Token.sign(MyAppWeb.Endpoint, "user socket", user.id)})
      end

  The client connects with it (the `phoenix` JavaScript client:
  `new Socket("/socket", {params: {token: token}})`), and the socket verifies it in
  `connect/3`:

      defmodule MyAppWeb.UserSocket do
        use Fenix.Socket

        channel "room:*", MyAppWeb.RoomChannel

        @impl true
        def connect(%{"token" => token}, socket, _connect_info) do
          # One day, in seconds: the token's own max age if left out.
          case Fenix.Token.verify(socket, "user socket", token, max_age: 86_400) do
            {:ok, user_id} -> {:ok, assign(socket, :user_id, user_id)}
            {:error, _reason} -> :error
          end
        end

        def connect(_params, _socket, _connect_info), do: :error

        @impl true
        def id(socket), do: "users_socket:\#{socket.assigns.user_id}"
      end

  `verify/4` answers `{:ok, data}`, or `{:error, :expired}` for a token older than its
  max age, `{:error, :invalid}` for one that was not signed with this key base and
  salt (tampered with, made for another salt, or not a token), and
  `{:error, :missing}` for `nil`. `encrypt/4` and `decrypt/4` work the same way.

  ## Context

  The first argument gives the secret key base that the keys are derived from:

    * an endpoint module: its `:secret_key_base` config, read with
      `c:Fenix.Endpoint.config/2` (a Phoenix endpoint works too);
    * a `Fenix.Socket`, or any struct or map with an `:endpoint`: that endpoint's;
    * a map or struct with a `:secret_key_base` string, such as a `Plug.Conn` that went
      through a Phoenix endpoint: that string;
    * the secret key base itself, a string of at least 20 bytes (64 random bytes is
      what Phoenix generates).

  The second argument is the salt (for `sign/4` and `verify/4`) or the secret (for
  `encrypt/4` and `decrypt/4`): any string, the same on both sides; use one per kind
  of token, such as `"user socket"`, so that a token made for one purpose is invalid
  for another. The data is any term without functions.

  ## How a token is made

    1. A key is derived from the secret key base and the salt with PBKDF2-HMAC
       (options `:key_iterations`, `:key_length`, `:key_digest`). Derived keys are
       cached, up to #{Fenix.Token.KeyGenerator.max_entries()} of them (then the cache
       is emptied and fills again), so that only the first call with a key base and
       salt pays for the derivation.
    2. `{data, signed_at_in_ms, max_age}` is encoded with `:erlang.term_to_binary/1`.
    3. `sign/4` signs it with HMAC-SHA256: `"SFMyNTY." <> payload <> "." <> signature`,
       each part base64url (`"SFMyNTY"` is `"HS256"`). `encrypt/4` encrypts it with
       XChaCha20-Poly1305 and a random nonce: `"XCP." <> base64url(nonce <> tag <> cipher text)`,
       as `Plug.Crypto.MessageEncryptor` 2.x does, so the same data encrypts differently
       each time.

  Verifying checks the signature (or decrypts), decodes the term without creating
  atoms (`:safe`), refuses a term that holds a function, and then checks the age
  against the `:max_age` given, or else the one in the token.

  ## Options

  See `t:option/0`. The four functions take the same options, so that one list can
  serve both sides: `:signed_at` only matters to `sign/4` and `encrypt/4`, and
  `:max_age` is the default written into the token there, the limit checked in
  `verify/4` and `decrypt/4`. A key that is not an option raises `ArgumentError`, as
  does a value of the wrong kind.
  """

  alias Fenix.Token.{KeyGenerator, MessageEncryptor, MessageVerifier}

  @typedoc """
  Where the secret key base comes from: an endpoint module, a `Fenix.Socket` (or a
  map with an `:endpoint`), a map with a `:secret_key_base`, or the key base itself.
  """
  @type context ::
          module()
          | Fenix.Socket.t()
          | %{required(:endpoint) => module(), optional(atom()) => term()}
          | %{required(:secret_key_base) => String.t(), optional(atom()) => term()}
          | String.t()

  @typedoc """
  The options, as in `Phoenix.Token`:

    * `:key_iterations` - PBKDF2 iterations of the key derivation. Default `1000`.
    * `:key_length` - bytes of the derived key. Default `32`, which encryption
      requires (XChaCha20 keys are 256 bits).
    * `:key_digest` - the HMAC digest of the key derivation: `:sha256`, `:sha384` or
      `:sha512`. Default `:sha256`.
    * `:signed_at` - `sign/4` and `encrypt/4`: the token's time, in seconds since the
      Unix epoch (the token keeps milliseconds). Default: now.
    * `:max_age` - in seconds, or `:infinity`. For `sign/4` and `encrypt/4`, the max
      age written in the token, which verifying uses when given none. Default
      `86400` (one day). For `verify/4` and `decrypt/4`, the max age to check the token
      against instead. A max age of `0` or less makes every token expired.
  """
  @type option ::
          {:key_iterations, pos_integer()}
          | {:key_length, pos_integer()}
          | {:key_digest, :sha256 | :sha384 | :sha512}
          | {:signed_at, number()}
          | {:max_age, number() | :infinity}

  @typedoc "A list of `t:option/0`."
  @type options :: [option()]

  @defaults [key_iterations: 1000, key_length: 32, key_digest: :sha256]
  @default_max_age 86_400
  @digests [:sha256, :sha384, :sha512]

  @doc """
  Encodes and signs `data` into a token. The data can be read by anyone who has the
  token, but not changed.

      iex> token = Fenix.Token.sign("a secret key base of at least 20 bytes", "user socket", 42)
      iex> Fenix.Token.verify("a secret key base of at least 20 bytes", "user socket", token)
      {:ok, 42}
  """
  @spec sign(context(), binary(), term(), options()) :: String.t()
  def sign(context, salt, data, opts \\ []) when is_binary(salt) do
    opts = validate!(opts)

    data
    |> encode(opts)
    |> MessageVerifier.sign(key(context, salt, opts))
  end

  @doc """
  Verifies `token` and decodes the data that `sign/4` put in it.

  Returns `{:ok, data}`, or `{:error, :expired}` when the token is older than its max
  age (the `:max_age` option, else the token's own), `{:error, :invalid}` when it was
  not signed with this context and salt, or `{:error, :missing}` when `token` is `nil`.

      iex> key_base = "a secret key base of at least 20 bytes"
      iex> token = Fenix.Token.sign(key_base, "user socket", 42, signed_at: 0)
      iex> Fenix.Token.verify(key_base, "user socket", token, max_age: 60)
      {:error, :expired}
      iex> Fenix.Token.verify(key_base, "user socket", token, max_age: :infinity)
      {:ok, 42}
      iex> Fenix.Token.verify(key_base, "another salt", token, max_age: :infinity)
      {:error, :invalid}
      iex> Fenix.Token.verify(key_base, "user socket", nil)
      {:error, :missing}
  """
  @spec verify(context(), binary(), String.t() | nil, options()) ::
          {:ok, term()} | {:error, :expired | :invalid | :missing}
  def verify(context, salt, token, opts \\ []) when is_binary(salt) and (is_binary(token) or is_nil(token)) do
    opts = validate!(opts)
    key = key(context, salt, opts)
    open(token, opts, &MessageVerifier.verify(&1, key))
  end

  @doc """
  Encodes and encrypts `data` into a token: as `sign/4`, but the data cannot be read
  without the key either. Get it back with `decrypt/4`.

      iex> token = Fenix.Token.encrypt("a secret key base of at least 20 bytes", "user secret", %{"id" => 7})
      iex> Fenix.Token.decrypt("a secret key base of at least 20 bytes", "user secret", token)
      {:ok, %{"id" => 7}}
  """
  @spec encrypt(context(), binary(), term(), options()) :: String.t()
  def encrypt(context, secret, data, opts \\ []) when is_binary(secret) do
    opts = validate!(opts)

    data
    |> encode(opts)
    |> MessageEncryptor.encrypt(encryption_key(context, secret, opts))
  end

  @doc """
  Decrypts `token` and decodes the data that `encrypt/4` put in it. Returns what
  `verify/4` does: `{:ok, data}`, `{:error, :expired}`, `{:error, :invalid}` or
  `{:error, :missing}`.
  """
  @spec decrypt(context(), binary(), String.t() | nil, options()) ::
          {:ok, term()} | {:error, :expired | :invalid | :missing}
  def decrypt(context, secret, token, opts \\ []) when is_binary(secret) and (is_binary(token) or is_nil(token)) do
    opts = validate!(opts)
    key = encryption_key(context, secret, opts)
    open(token, opts, &MessageEncryptor.decrypt(&1, key))
  end

  ## The message

  # The key is derived (and the context checked) for a nil token too, as Phoenix
  # checks the context first.
  defp open(nil, _opts, _unseal), do: {:error, :missing}

  defp open(token, opts, unseal) do
    case unseal.(token) do
      {:ok, message} -> decode(message, opts)
      :error -> {:error, :invalid}
    end
  end

  defp encode(data, opts) do
    signed_at_ms =
      case Keyword.fetch(opts, :signed_at) do
        {:ok, seconds} -> trunc(seconds * 1000)
        :error -> now_ms()
      end

    :erlang.term_to_binary({data, signed_at_ms, Keyword.get(opts, :max_age, @default_max_age)})
  end

  # The signature or the encryption vouches for the message, which this node or one
  # with the same key base made: a term it cannot decode (an atom this node does not
  # know, a function) is still refused rather than raised on.
  defp decode(message, opts) do
    with {:ok, {data, signed_at_ms, max_age}} when is_integer(signed_at_ms) <- non_executable_binary_to_term(message) do
      if expired?(signed_at_ms, Keyword.get(opts, :max_age, max_age)), do: {:error, :expired}, else: {:ok, data}
    else
      _ -> {:error, :invalid}
    end
  end

  defp expired?(_signed_at_ms, :infinity), do: false
  defp expired?(_signed_at_ms, max_age) when max_age <= 0, do: true
  defp expired?(signed_at_ms, max_age), do: signed_at_ms + trunc(max_age * 1000) < now_ms()

  defp now_ms, do: System.system_time(:millisecond)

  defp non_executable_binary_to_term(binary) do
    term = :erlang.binary_to_term(binary, [:safe])
    if executable?(term), do: :error, else: {:ok, term}
  rescue
    ArgumentError -> :error
  end

  defp executable?(term) when is_function(term), do: true
  defp executable?(term) when is_list(term), do: list_executable?(term)
  defp executable?(term) when is_tuple(term), do: term |> Tuple.to_list() |> list_executable?()
  defp executable?(term) when is_map(term), do: Enum.any?(term, fn {k, v} -> executable?(k) or executable?(v) end)
  defp executable?(_term), do: false

  # Improper lists too: [a | b] has a tail that is not a list.
  defp list_executable?([]), do: false
  defp list_executable?([head | tail]) when is_list(tail), do: executable?(head) or list_executable?(tail)
  defp list_executable?([head | tail]), do: executable?(head) or executable?(tail)

  ## Keys

  defp key(context, salt, opts) do
    KeyGenerator.derive(key_base(context), salt, opts[:key_iterations], opts[:key_length], opts[:key_digest])
  end

  defp encryption_key(context, secret, opts) do
    unless opts[:key_length] == 32 do
      raise ArgumentError,
            "encrypt/4 and decrypt/4 need a :key_length of 32 (XChaCha20 keys are 256 bits), " <>
              "got: #{inspect(opts[:key_length])}"
    end

    key(context, secret, opts)
  end

  # Never put a key base into an error message: they are secrets.
  defp key_base(%{secret_key_base: key_base}) when is_binary(key_base), do: key_base!(key_base)
  defp key_base(%{endpoint: endpoint}) when is_atom(endpoint) and endpoint != nil, do: endpoint_key_base(endpoint)
  defp key_base(endpoint) when is_atom(endpoint) and endpoint not in [nil, true, false], do: endpoint_key_base(endpoint)
  defp key_base(key_base) when is_binary(key_base), do: key_base!(key_base)

  defp key_base(other) do
    raise ArgumentError,
          "the context of a token must be an endpoint module, a Fenix.Socket or map with an :endpoint, " <>
            "a map with a :secret_key_base string, or a secret key base string, got: #{describe(other)}"
  end

  defp key_base!(key_base) when byte_size(key_base) >= 20, do: key_base

  defp key_base!(key_base) do
    raise ArgumentError,
          "a secret key base must be at least 20 bytes (64 random bytes are best), got one of #{byte_size(key_base)}"
  end

  defp endpoint_key_base(endpoint) do
    case endpoint.config(:secret_key_base) do
      key_base when is_binary(key_base) ->
        key_base!(key_base)

      nil ->
        raise ArgumentError, """
        no :secret_key_base configuration found in #{inspect(endpoint)}. Configure one, for example:

            config :my_app, #{inspect(endpoint)}, secret_key_base: System.fetch_env!("SECRET_KEY_BASE")

        or give it to the endpoint's start_link/1.
        """
    end
  end

  defp describe(%module{}), do: "a #{inspect(module)} struct with no :endpoint or :secret_key_base"
  defp describe(map) when is_map(map), do: "a map with no :endpoint or :secret_key_base"
  defp describe(other), do: inspect(other)

  ## Options

  defp validate!(opts) do
    opts = Keyword.validate!(opts, [:signed_at, :max_age | @defaults])

    check!(opts, :key_iterations, &(is_integer(&1) and &1 > 0), "a positive integer")
    check!(opts, :key_length, &(is_integer(&1) and &1 > 0), "a positive integer")
    check!(opts, :key_digest, &(&1 in @digests), "one of #{inspect(@digests)}")
    check!(opts, :signed_at, &is_number/1, "a number of seconds")
    check!(opts, :max_age, &(is_number(&1) or &1 == :infinity), "a number of seconds or :infinity")
    opts
  end

  defp check!(opts, key, valid?, expected) do
    with {:ok, value} <- Keyword.fetch(opts, key), false <- valid?.(value) do
      raise ArgumentError, "the #{inspect(key)} token option must be #{expected}, got: #{inspect(value)}"
    end
  end
end
