defmodule Fenix.Token.MessageVerifier do
  @moduledoc false
  # Signed tokens, in Plug.Crypto.MessageVerifier's format (that of a JWS in compact
  # serialization, RFC 7515 §7.1, with the algorithm name as the whole header):
  #
  #     base64url("HS256") "." base64url(payload) "." base64url(HMAC-SHA256(key, <the first two parts>))
  #
  # base64url without padding; "SFMyNTY" is base64url("HS256"). The payload is readable
  # by anyone: the signature only makes it tamper-proof. Tokens are signed with HS256;
  # HS384 and HS512 tokens (which Plug.Crypto can make) are verified too.

  import Bitwise

  @header "HS256"

  @doc "Signs `payload` with `key`."
  @spec sign(binary(), binary()) :: String.t()
  def sign(payload, key) when is_binary(payload) and byte_size(key) > 0 do
    signed = encode(@header) <> "." <> encode(payload)
    signed <> "." <> encode(:crypto.mac(:hmac, :sha256, key, signed))
  end

  @doc "The payload of `token` if `key` signed it, else `:error`."
  @spec verify(binary(), binary()) :: {:ok, binary()} | :error
  def verify(token, key) when is_binary(token) and byte_size(key) > 0 do
    with [header, encoded_payload, signature] <- String.split(token, ".", parts: 3),
         {:ok, digest} <- digest(header),
         {:ok, payload} <- Base.url_decode64(encoded_payload, padding: false),
         {:ok, signature} <- Base.url_decode64(signature, padding: false),
         true <- equal?(:crypto.mac(:hmac, digest, key, header <> "." <> encoded_payload), signature) do
      {:ok, payload}
    else
      _ -> :error
    end
  end

  defp digest("SFMyNTY"), do: {:ok, :sha256}
  defp digest("SFMzODQ"), do: {:ok, :sha384}
  defp digest("SFM1MTI"), do: {:ok, :sha512}
  defp digest(_header), do: :error

  defp encode(binary), do: Base.url_encode64(binary, padding: false)

  # In constant time, so that the time a verify takes tells nothing about how much
  # of a forged signature is right.
  defp equal?(a, b) when byte_size(a) == byte_size(b), do: equal?(a, b, 0)
  defp equal?(_a, _b), do: false

  defp equal?(<<x, a::binary>>, <<y, b::binary>>, acc), do: equal?(a, b, bor(acc, bxor(x, y)))
  defp equal?(<<>>, <<>>, acc), do: acc == 0
end
