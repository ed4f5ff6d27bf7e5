defmodule Fenix.TokenTest.Endpoint do
  # Never started: config/2 reads the application config, which the tests put.
  use Fenix.Endpoint, otp_app: :fenix
end

defmodule Fenix.TokenTest.KeylessEndpoint do
  use Fenix.Endpoint, otp_app: :fenix
end

defmodule Fenix.TokenTest.Conn do
  # Stands for a Plug.Conn that went through a Phoenix endpoint (plug is not a
  # dependency): a struct with a :secret_key_base and no :endpoint.
  defstruct [:secret_key_base, assigns: %{}]
end

defmodule Fenix.TokenTest do
  use ExUnit.Case, async: true

  import Bitwise

  alias Fenix.Test.JSON
  alias Fenix.Token
  alias Fenix.Token.{KeyGenerator, MessageEncryptor, MessageVerifier}
  alias Fenix.TokenTest.{Endpoint, KeylessEndpoint}

  doctest Fenix.Token

  # Made by Phoenix.Token 1.7.21 with plug_crypto 2.1.0 (see its "about"): a copy of
  # the team's shared/vectors/phoenix_token.json, kept in the repository so that a
  # clone alone runs it; read at compile time so that each vector is a test.
  @vectors_path Path.expand("../fixtures/phoenix_token.json", __DIR__)
  @external_resource @vectors_path
  @vectors @vectors_path |> File.read!() |> JSON.decode!()

  @key_base String.duplicate("fenix token test key base ", 3)

  setup_all do
    Application.put_env(:fenix, Endpoint, secret_key_base: @key_base)
    on_exit(fn -> Application.delete_env(:fenix, Endpoint) end)
  end

  describe "Phoenix's signed tokens" do
    for {vector, i} <- Enum.with_index(@vectors["signed"]) do
      @vector vector

      test "##{i} (#{inspect(vector["data"])}) verifies, and signing the same gives the same bytes" do
        %{"secret_key_base" => key_base, "salt" => salt, "data" => data, "signed_at" => at, "token" => token} = @vector
        assert Token.verify(key_base, salt, token, max_age: :infinity) == {:ok, data}
        assert Token.sign(key_base, salt, data, signed_at: at) == token
      end
    end

    test "are expired by the max age signed in them (one day, long past)" do
      %{"secret_key_base" => key_base, "salt" => salt, "token" => token} = hd(@vectors["signed"])
      assert Token.verify(key_base, salt, token) == {:error, :expired}
    end
  end

  describe "Phoenix's encrypted tokens" do
    for {vector, i} <- Enum.with_index(@vectors["encrypted"]) do
      @vector vector

      test "##{i} (#{inspect(vector["data"])}) decrypts" do
        %{"secret_key_base" => key_base, "secret" => secret, "data" => data, "token" => token} = @vector
        assert Token.decrypt(key_base, secret, token, max_age: :infinity) == {:ok, data}
        assert Token.decrypt(key_base, secret, token) == {:error, :expired}
      end
    end
  end

  describe "sign/4 and verify/4" do
    test "any term without functions goes through" do
      terms = [1, "u1", :an_atom, nil, {1, "two", [:three]}, %{"id" => 42, role: :admin}, <<255, 0>>, [1 | 2], 1.5]

      for data <- terms do
        assert Token.verify(@key_base, "salt", Token.sign(@key_base, "salt", data)) == {:ok, data}
      end
    end

    test "a token is readable: HS256 header, {data, signed at in ms, max age}, signature" do
      token = Token.sign(@key_base, "salt", "u1", signed_at: 1_700_000_000)
      assert ["SFMyNTY", payload, signature] = String.split(token, ".")

      assert payload |> Base.url_decode64!(padding: false) |> :erlang.binary_to_term() ==
               {"u1", 1_700_000_000_000, 86_400}

      assert byte_size(Base.url_decode64!(signature, padding: false)) == 32
    end

    test "signed_at in the past: expired past the max age given to verify" do
      token = Token.sign(@key_base, "salt", "u1", signed_at: now() - 100)
      assert Token.verify(@key_base, "salt", token, max_age: 10) == {:error, :expired}
      assert Token.verify(@key_base, "salt", token, max_age: 1_000) == {:ok, "u1"}
      assert Token.verify(@key_base, "salt", token, max_age: :infinity) == {:ok, "u1"}
    end

    test "without a max age, verify uses the token's own (86400 by default)" do
      assert verify(Token.sign(@key_base, "salt", 1, signed_at: now() - 86_300)) == {:ok, 1}
      assert verify(Token.sign(@key_base, "salt", 1, signed_at: now() - 86_500)) == {:error, :expired}
      assert verify(Token.sign(@key_base, "salt", 1, signed_at: now() - 100, max_age: 10)) == {:error, :expired}
      assert verify(Token.sign(@key_base, "salt", 1, signed_at: 0, max_age: :infinity)) == {:ok, 1}
    end

    test "max_age: 0 (or less) makes every token expired, as in Phoenix" do
      token = Token.sign(@key_base, "salt", 1)
      assert Token.verify(@key_base, "salt", token, max_age: 0) == {:error, :expired}
      assert Token.verify(@key_base, "salt", token, max_age: -1) == {:error, :expired}
      assert verify(Token.sign(@key_base, "salt", 1, max_age: 0)) == {:error, :expired}
    end

    test "a token with any byte flipped is invalid" do
      token = Token.sign(@key_base, "salt", %{"id" => 42})

      for tampered <- flips(token) do
        assert Token.verify(@key_base, "salt", tampered, max_age: :infinity) == {:error, :invalid}
      end
    end

    test "another salt, another key base or other key options: invalid" do
      token = Token.sign(@key_base, "salt", 1)
      assert Token.verify(@key_base, "other salt", token) == {:error, :invalid}
      assert Token.verify(@key_base <> "!", "salt", token) == {:error, :invalid}
      assert Token.verify(@key_base, "salt", token, key_iterations: 999) == {:error, :invalid}
      assert Token.verify(@key_base, "salt", token, key_digest: :sha512) == {:error, :invalid}
      assert Token.verify(@key_base, "salt", token, key_length: 64) == {:error, :invalid}
    end

    test "the key options are used on both sides" do
      opts = [key_iterations: 10, key_length: 64, key_digest: :sha512]
      token = Token.sign(@key_base, "salt", 1, opts)
      assert Token.verify(@key_base, "salt", token, opts) == {:ok, 1}
      assert Token.verify(@key_base, "salt", token) == {:error, :invalid}
    end

    test "nil is missing, anything that is not a token invalid" do
      assert Token.verify(@key_base, "salt", nil) == {:error, :missing}

      for not_a_token <- ["", "SFMyNTY", "SFMyNTY..", "a.b.c", "SFMyNTY.!!.!!", Token.encrypt(@key_base, "salt", 1)] do
        assert Token.verify(@key_base, "salt", not_a_token) == {:error, :invalid}
      end
    end

    test "a signed term holding a function is refused" do
      key = KeyGenerator.derive(@key_base, "salt", 1000, 32, :sha256)
      token = MessageVerifier.sign(:erlang.term_to_binary({fn -> :run end, now_ms(), 86_400}), key)
      assert Token.verify(@key_base, "salt", token) == {:error, :invalid}
    end

    test "a signed term naming an atom this node does not know is refused, and creates no atom" do
      key = KeyGenerator.derive(@key_base, "salt", 1000, 32, :sha256)
      known = :erlang.term_to_binary({:fenix_token_test_atom_a, now_ms(), 86_400})
      unknown = :binary.replace(known, "fenix_token_test_atom_a", "fenix_token_test_atom_z")
      token = MessageVerifier.sign(unknown, key)
      assert Token.verify(@key_base, "salt", token) == {:error, :invalid}
      assert_raise ArgumentError, fn -> String.to_existing_atom("fenix_token_test_atom_z") end
    end

    test "options are checked" do
      assert_raise ArgumentError, ~r/unknown keys \[:max_agee\]/, fn ->
        Token.sign(@key_base, "salt", 1, max_agee: 1)
      end

      assert_raise ArgumentError, ~r/:key_digest token option must be one of/, fn ->
        Token.sign(@key_base, "salt", 1, key_digest: :md5)
      end

      assert_raise ArgumentError, ~r/:key_iterations token option/, fn ->
        Token.verify(@key_base, "salt", "t", key_iterations: 0)
      end

      assert_raise ArgumentError, ~r/:max_age token option/, fn ->
        Token.verify(@key_base, "salt", nil, max_age: "1")
      end

      assert_raise ArgumentError, ~r/:signed_at token option/, fn ->
        Token.sign(@key_base, "salt", 1, signed_at: :now)
      end
    end
  end

  describe "encrypt/4 and decrypt/4" do
    test "round trip, and the same data encrypts differently each time" do
      data = %{"id" => 7, secret: {:a, "b"}}
      a = Token.encrypt(@key_base, "secret", data)
      b = Token.encrypt(@key_base, "secret", data)
      assert a != b
      assert "XCP." <> _ = a
      assert Token.decrypt(@key_base, "secret", a) == {:ok, data}
      assert Token.decrypt(@key_base, "secret", b) == {:ok, data}
      refute a =~ "secret"
    end

    test "expiry works as for signed tokens" do
      token = Token.encrypt(@key_base, "secret", 1, signed_at: now() - 100)
      assert Token.decrypt(@key_base, "secret", token, max_age: 10) == {:error, :expired}
      assert Token.decrypt(@key_base, "secret", token, max_age: 1_000) == {:ok, 1}
      assert Token.decrypt(@key_base, "secret", token, max_age: 0) == {:error, :expired}
      assert Token.decrypt(@key_base, "secret", Token.encrypt(@key_base, "secret", 1, max_age: 0)) == {:error, :expired}
      old = Token.encrypt(@key_base, "secret", 1, signed_at: now() - 100, max_age: 10)
      assert Token.decrypt(@key_base, "secret", old) == {:error, :expired}
    end

    test "a token with any byte flipped is invalid" do
      token = Token.encrypt(@key_base, "secret", %{"id" => 42})

      for tampered <- flips(token) do
        assert Token.decrypt(@key_base, "secret", tampered, max_age: :infinity) == {:error, :invalid}
      end
    end

    test "another secret or key base: invalid; nil: missing; a signed token: invalid" do
      token = Token.encrypt(@key_base, "secret", 1)
      assert Token.decrypt(@key_base, "other secret", token) == {:error, :invalid}
      assert Token.decrypt(@key_base <> "!", "secret", token) == {:error, :invalid}
      assert Token.decrypt(@key_base, "secret", nil) == {:error, :missing}

      for not_a_token <- ["", "XCP.", "XCP.AAAA", "A128GCM.a.b.c.d", Token.sign(@key_base, "secret", 1)] do
        assert Token.decrypt(@key_base, "secret", not_a_token) == {:error, :invalid}
      end
    end

    test "keys must be 32 bytes" do
      assert_raise ArgumentError, ~r/:key_length of 32/, fn -> Token.encrypt(@key_base, "secret", 1, key_length: 64) end

      assert_raise ArgumentError, ~r/:key_length of 32/, fn ->
        Token.decrypt(@key_base, "secret", "XCP.", key_length: 16)
      end
    end

    test "HChaCha20 gives the subkey of draft-irtf-cfrg-xchacha-03 §2.2.1" do
      key = :binary.list_to_bin(Enum.to_list(0..31))
      input = Base.decode16!("000000090000004A0000000031415927")
      subkey = Base.decode16!("82413B4227B27BFED30E42508A877D73A0F9E4D58A74A853C12EC41326D3ECDC")
      assert MessageEncryptor.hchacha20(key, input) == subkey
    end
  end

  describe "contexts" do
    test "an endpoint, its sockets, a map with an endpoint or a key base: the same key base, the same token" do
      expected = Token.sign(@key_base, "salt", 1, signed_at: 1)

      contexts = [Endpoint, %Fenix.Socket{endpoint: Endpoint}, %{endpoint: Endpoint}, %{secret_key_base: @key_base}]

      for context <- contexts do
        assert Token.sign(context, "salt", 1, signed_at: 1) == expected
        assert Token.verify(context, "salt", expected, max_age: :infinity) == {:ok, 1}
        assert Token.decrypt(context, "salt", Token.encrypt(@key_base, "salt", 1)) == {:ok, 1}
        assert Token.verify(context, "salt", nil) == {:error, :missing}
      end
    end

    test "a struct with a secret_key_base, such as a Plug.Conn, gives that key base" do
      conn = %Fenix.TokenTest.Conn{secret_key_base: @key_base}
      assert Token.verify(conn, "salt", Token.sign(@key_base, "salt", 1)) == {:ok, 1}
      assert Token.decrypt(conn, "secret", Token.encrypt(@key_base, "secret", 1)) == {:ok, 1}
    end

    test "an endpoint without a secret_key_base raises, and says how to configure one" do
      assert_raise ArgumentError, ~r/no :secret_key_base configuration found in Fenix.TokenTest.KeylessEndpoint/, fn ->
        Token.sign(KeylessEndpoint, "salt", 1)
      end

      assert_raise ArgumentError, ~r/no :secret_key_base/, fn ->
        Token.verify(%Fenix.Socket{endpoint: KeylessEndpoint}, "salt", nil)
      end
    end

    test "a short key base or anything else raises, without showing the key base" do
      error = assert_raise ArgumentError, fn -> Token.sign("short secret", "salt", 1) end
      assert error.message =~ "at least 20 bytes"
      refute error.message =~ "short secret"
      assert_raise ArgumentError, ~r/at least 20 bytes/, fn -> Token.sign(%{secret_key_base: "short"}, "salt", 1) end
      assert_raise ArgumentError, ~r/got: 123/, fn -> Token.sign(123, "salt", 1) end
      assert_raise ArgumentError, ~r/got: a map with no :endpoint/, fn -> Token.verify(%{}, "salt", nil) end
      assert_raise ArgumentError, ~r/got: a Fenix.Socket struct/, fn -> Token.verify(%Fenix.Socket{}, "salt", "t") end
    end
  end

  describe "the key cache" do
    test "gives the PBKDF2 key, and stays bounded" do
      expected = :crypto.pbkdf2_hmac(:sha256, @key_base, "cache salt", 1000, 32)
      assert KeyGenerator.derive(@key_base, "cache salt", 1000, 32, :sha256) == expected
      assert KeyGenerator.derive(@key_base, "cache salt", 1000, 32, :sha256) == expected

      for i <- 1..(KeyGenerator.max_entries() + 10), do: KeyGenerator.derive(@key_base, "salt #{i}", 1, 32, :sha256)
      assert :ets.info(KeyGenerator, :size) <= KeyGenerator.max_entries()
    end
  end

  defp verify(token), do: Token.verify(@key_base, "salt", token)

  defp now, do: System.system_time(:second)
  defp now_ms, do: System.system_time(:millisecond)

  # Every variant of `token` with one base64url character changed in its top bit, a
  # data bit in every position (the low bits of a part's last character can be
  # padding). The dots and a non-base64 prefix ("XCP") are left alone.
  @alphabet ~c"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  defp flips(token) do
    prefix = if String.starts_with?(token, "XCP."), do: 4, else: 0

    for i <- prefix..(byte_size(token) - 1), (c = :binary.at(token, i)) != ?. do
      index = Enum.find_index(@alphabet, &(&1 == c))
      flipped = Enum.at(@alphabet, bxor(index, 32))
      binary_part(token, 0, i) <> <<flipped>> <> binary_part(token, i + 1, byte_size(token) - i - 1)
    end
  end
end
