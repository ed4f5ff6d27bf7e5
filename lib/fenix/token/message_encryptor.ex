defmodule Fenix.Token.MessageEncryptor do
  @moduledoc false
  # Encrypted tokens, in the format of Plug.Crypto.MessageEncryptor 2.x (what
  # Phoenix.Token.encrypt/4 makes since plug_crypto 2.0): XChaCha20-Poly1305
  # (draft-irtf-cfrg-xchacha-03) with a random 24-byte nonce,
  #
  #     "XCP." base64url(nonce <> tag <> cipher_text)
  #
  # base64url without padding, the tag 16 bytes, and "A128GCM" as the additional
  # authenticated data (Plug.Crypto's default, kept from its earlier AES-GCM format).
  # The layout and the AAD are those that open the Phoenix-made token of
  # test/fixtures/phoenix_token.json (a copy of the team's shared vectors).
  # A random 24-byte nonce never repeats in practice, which a 12-byte one could.
  #
  # OTP's :crypto has ChaCha20-Poly1305 but not its extended-nonce form, so HChaCha20
  # is computed here: it turns the key and the first 16 bytes of the nonce into a
  # subkey, and ChaCha20-Poly1305 runs with that subkey and the nonce's last 8 bytes
  # behind 4 zero bytes (draft §2.3).

  import Bitwise

  @prefix "XCP."
  @aad "A128GCM"

  @doc "Encrypts `plain_text` with `key` (32 bytes)."
  @spec encrypt(binary(), <<_::256>>) :: String.t()
  def encrypt(plain_text, <<key::binary-32>>) when is_binary(plain_text) do
    nonce = :crypto.strong_rand_bytes(24)
    {subkey, chacha_nonce} = subkey_and_nonce(key, nonce)
    {cipher_text, tag} = :crypto.crypto_one_time_aead(:chacha20_poly1305, subkey, chacha_nonce, plain_text, @aad, true)
    @prefix <> Base.url_encode64(nonce <> tag <> cipher_text, padding: false)
  end

  @doc "The plain text of `token` if it was encrypted with `key`, else `:error`."
  @spec decrypt(binary(), <<_::256>>) :: {:ok, binary()} | :error
  def decrypt(token, <<key::binary-32>>) when is_binary(token) do
    with @prefix <> encoded <- token,
         {:ok, sealed} <- Base.url_decode64(encoded, padding: false),
         <<nonce::binary-24, tag::binary-16, cipher_text::binary>> <- sealed do
      {subkey, chacha_nonce} = subkey_and_nonce(key, nonce)

      case :crypto.crypto_one_time_aead(:chacha20_poly1305, subkey, chacha_nonce, cipher_text, @aad, tag, false) do
        plain_text when is_binary(plain_text) -> {:ok, plain_text}
        :error -> :error
      end
    else
      _ -> :error
    end
  end

  defp subkey_and_nonce(key, <<head::binary-16, tail::binary-8>>), do: {hchacha20(key, head), <<0::32, tail::binary>>}

  @doc false
  # HChaCha20 (draft §2.2): the ChaCha20 block function's 20 rounds over the constants,
  # the key and the 16-byte input, without the final addition; the subkey is the first
  # and the last row of the state. Words are little-endian.
  @spec hchacha20(<<_::256>>, <<_::128>>) :: <<_::256>>
  def hchacha20(<<key::binary-32>>, <<input::binary-16>>) do
    state = for <<word::little-32 <- "expand 32-byte k" <> key <> input>>, do: word
    s = Enum.reduce(1..10, List.to_tuple(state), fn _, s -> double_round(s) end)

    for i <- [0, 1, 2, 3, 12, 13, 14, 15], into: <<>>, do: <<elem(s, i)::little-32>>
  end

  # A column round then a diagonal round (RFC 8439 §2.3).
  defp double_round(s) do
    s
    |> quarter_round(0, 4, 8, 12)
    |> quarter_round(1, 5, 9, 13)
    |> quarter_round(2, 6, 10, 14)
    |> quarter_round(3, 7, 11, 15)
    |> quarter_round(0, 5, 10, 15)
    |> quarter_round(1, 6, 11, 12)
    |> quarter_round(2, 7, 8, 13)
    |> quarter_round(3, 4, 9, 14)
  end

  # RFC 8439 §2.1, on the state's words at indices a, b, c, d.
  defp quarter_round(s, a, b, c, d) do
    {va, vb, vc, vd} = {elem(s, a), elem(s, b), elem(s, c), elem(s, d)}
    va = add(va, vb)
    vd = rotate(bxor(vd, va), 16)
    vc = add(vc, vd)
    vb = rotate(bxor(vb, vc), 12)
    va = add(va, vb)
    vd = rotate(bxor(vd, va), 8)
    vc = add(vc, vd)
    vb = rotate(bxor(vb, vc), 7)
    s |> put_elem(a, va) |> put_elem(b, vb) |> put_elem(c, vc) |> put_elem(d, vd)
  end

  defp add(x, y), do: band(x + y, 0xFFFFFFFF)
  defp rotate(x, n), do: band(bor(bsl(x, n), bsr(x, 32 - n)), 0xFFFFFFFF)
end
