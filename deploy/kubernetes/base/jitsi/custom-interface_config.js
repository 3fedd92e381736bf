// Meetgate's additions to Jitsi Meet's interface_config.js (appended by the web image from
// /config/custom-interface_config.js). Links only: none of these is fetched, but none should
// send attendees to a third party either.

interfaceConfig.SHOW_JITSI_WATERMARK = false;
interfaceConfig.JITSI_WATERMARK_LINK = '';
interfaceConfig.SHOW_BRAND_WATERMARK = false;
interfaceConfig.BRAND_WATERMARK_LINK = '';
interfaceConfig.SHOW_POWERED_BY = false;
interfaceConfig.MOBILE_APP_PROMO = false;
interfaceConfig.SUPPORT_URL = '';
interfaceConfig.MOBILE_DOWNLOAD_LINK_ANDROID = '';
interfaceConfig.MOBILE_DOWNLOAD_LINK_IOS = '';
interfaceConfig.MOBILE_DOWNLOAD_LINK_F_DROID = '';
interfaceConfig.APP_SCHEME = '';
interfaceConfig.HIDE_INVITE_MORE_HEADER = true;
interfaceConfig.DISABLE_JOIN_LEAVE_NOTIFICATIONS = false;
