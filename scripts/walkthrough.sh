#!/usr/bin/env bash
# The README's grpcurl walk-through, runnable: start `roaming up` first (fresh
# data directory), then run this. Every step fails the script if it fails.
set -euo pipefail

# Everything goes through the gateway, the mesh's one public port.
GW=${GW:-127.0.0.1:50050}
# Plaintext, as `roaming up` serves it; CACERT=ca.crt speaks TLS to a gateway
# whose certificate that CA issued (deploy/README.md, step 5), checked
# against AUTHORITY if set (else the host of GW).
if [ -n "${CACERT:-}" ]; then
  TLS=(-cacert "$CACERT")
  if [ -n "${AUTHORITY:-}" ]; then TLS+=(-authority "$AUTHORITY"); fi
else
  TLS=(-plaintext)
fi
RES=$GW RENTAL=$GW PARKING=$GW VIEW=$GW
TODAY=$(date -u +%F)
IN_2_DAYS=$(date -u -d '+2 days' +%F)
field() { sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" | head -1; }

echo "== services (aggregated reflection, no .proto files needed)"
grpcurl "${TLS[@]}" $GW list

echo "== tokens for the demo principals (password: demo)"
token() {
  local t
  t=$(grpcurl "${TLS[@]}" -d "{\"username\":\"$1\",\"password\":\"demo\"}" $GW roaming.auth.v1.AuthService/IssueToken | field accessToken)
  [ -n "$t" ] || { echo "no token for $1" >&2; return 1; }
  echo "$t"
}
T=$(token alice);        ALICE=(-H "authorization: Bearer $T")
T=$(token staff-icn-t1); STAFF_T1=(-H "authorization: Bearer $T")
T=$(token staff-gmp);    STAFF_GMP=(-H "authorization: Bearer $T")
T=$(token gate-p1);      GATE=(-H "authorization: Bearer $T")
if grpcurl "${TLS[@]}" -d '{}' $VIEW roaming.view.v1.ViewService/ListMyReservations 2>/dev/null; then
  echo "a call without a token got through" >&2; exit 1
fi
echo "no token: refused (Unauthenticated)"

echo "== roaming: quote, then reserve and pay (the server prices it)"
grpcurl "${TLS[@]}" "${ALICE[@]}" -d "{\"device_model\":\"egg-lte\",\"country\":\"JP\",\"pickup_booth\":\"ICN-T1\",\"return_booth\":\"GMP\",\"start_date\":\"$TODAY\",\"end_date\":\"$IN_2_DAYS\"}" \
  $RES roaming.reservation.v1.ReservationService/QuoteRoaming
RID=$(grpcurl "${TLS[@]}" "${ALICE[@]}" -d "{\"request_id\":\"trip-$RANDOM\",\"device_model\":\"egg-lte\",\"country\":\"JP\",\"pickup_booth\":\"ICN-T1\",\"return_booth\":\"GMP\",\"start_date\":\"$TODAY\",\"end_date\":\"$IN_2_DAYS\",\"payment\":{\"card_number\":\"4111 1111 1111 1111\",\"expiry_month\":12,\"expiry_year\":2030,\"holder_name\":\"Alice Kim\",\"company\":\"VISA\"}}" \
  $RES roaming.reservation.v1.ReservationService/ReserveRoaming | field reservationId)
echo "reservation $RID"

echo "== my page (the view, built from events)"
sleep 1
grpcurl "${TLS[@]}" "${ALICE[@]}" -d "{\"reservation_id\":\"$RID\"}" $VIEW roaming.view.v1.ViewService/GetReservationView

echo "== the booth hands a device over, the customer returns it at GMP, GMP retrieves it"
DEVICES=$(grpcurl "${TLS[@]}" "${STAFF_T1[@]}" -d '{"device_model":"egg-lte"}' $RENTAL roaming.rental.v1.RentalService/ListDevices)
echo "$DEVICES"
# The first one in stock (ICN-T1-EGG-LTE-1 on a new mesh; an earlier run of
# this walk-through left its device at GMP).
SERIAL=$(echo "$DEVICES" | awk -F'"' '/"serial"/ {s=$4} /DEVICE_STATUS_IN_STOCK/ {print s; exit}')
grpcurl "${TLS[@]}" "${STAFF_T1[@]}" -d "{\"reservation_id\":\"$RID\",\"serial\":\"$SERIAL\"}" $RENTAL roaming.rental.v1.RentalService/HandOverDevice
grpcurl "${TLS[@]}" "${STAFF_GMP[@]}" -d "{\"reservation_id\":\"$RID\",\"booth\":\"GMP\"}" $RENTAL roaming.rental.v1.RentalService/ReturnDevice
grpcurl "${TLS[@]}" "${STAFF_GMP[@]}" -d "{\"reservation_id\":\"$RID\"}" $RENTAL roaming.rental.v1.RentalService/RetrieveDevice
sleep 1
grpcurl "${TLS[@]}" "${ALICE[@]}" -d "{\"reservation_id\":\"$RID\"}" $VIEW roaming.view.v1.ViewService/GetReservationView \
  | grep -q RESERVATION_STATUS_COMPLETED && echo "roaming reservation COMPLETED"

echo "== parking: reserve a window from now, enter at the gate, exit"
START=$(date -u +%FT%TZ)
END=$(date -u -d '+2 hours' +%FT%TZ)
PID=$(grpcurl "${TLS[@]}" "${ALICE[@]}" -d "{\"request_id\":\"park-$RANDOM\",\"space_id\":\"P1-B1-001\",\"vehicle_plate\":\"12가3456\",\"start_time\":\"$START\",\"end_time\":\"$END\",\"payment\":{\"card_number\":\"4111111111111111\",\"expiry_month\":12,\"expiry_year\":2030,\"holder_name\":\"Alice Kim\",\"company\":\"VISA\"}}" \
  $RES roaming.reservation.v1.ReservationService/ReserveParking | field reservationId)
echo "parking reservation $PID"
grpcurl "${TLS[@]}" "${GATE[@]}" -d '{"space_id":"P1-B1-001","vehicle_plate":"12가3456"}' $PARKING roaming.parking.v1.ParkingService/Enter
if grpcurl "${TLS[@]}" "${GATE[@]}" -d '{"space_id":"P1-B1-002","vehicle_plate":"99하9999"}' $PARKING roaming.parking.v1.ParkingService/Enter; then
  echo "an unreserved car got in" >&2; exit 1
fi
grpcurl "${TLS[@]}" "${GATE[@]}" -d '{"space_id":"P1-B1-001","vehicle_plate":"12가3456"}' $PARKING roaming.parking.v1.ParkingService/Exit
sleep 1
grpcurl "${TLS[@]}" "${ALICE[@]}" -d "{\"reservation_id\":\"$PID\"}" $VIEW roaming.view.v1.ViewService/GetReservationView \
  | grep -q RESERVATION_STATUS_COMPLETED && echo "parking reservation COMPLETED"
echo "walk-through OK"
